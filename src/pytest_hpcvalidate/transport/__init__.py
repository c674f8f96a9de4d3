"""Running one command on one node: ``Transport.run(cmd) -> CommandResult``.

One module per way of reaching a node (``ssh``, ``nsenter``, ``local``); nothing here
knows about clusters, configs or pytest.
"""

from .base import CommandFailed, CommandResult, Transport, TransportError

__all__ = ["CommandFailed", "CommandResult", "Transport", "TransportError"]
