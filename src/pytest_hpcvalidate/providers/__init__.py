"""Providers make (or attach to) a cluster from the config and undo exactly what they made.

One module per provider behind :class:`providers.base.Provider`; :func:`get_provider` picks
one by the config's ``provider`` field.
"""

from .base import Provider, ProvisioningError, get_provider

__all__ = ["Provider", "ProvisioningError", "get_provider"]
