"""pytest-testinfra on top of our transports: ``host_for(node).file("/etc/hosts").exists``.

testinfra's own backends would open their own connections; this one sends every command
through ``node.transport``, so testinfra modules share its connection, timeouts and errors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import testinfra.host
from testinfra.backend import base

if TYPE_CHECKING:  # pragma: no cover
    from ..cluster import Node

#: seconds a testinfra command may run unless the call passes ``timeout=``
DEFAULT_TIMEOUT_S = 60.0


class TransportBackend(base.BaseBackend):
    """A testinfra backend that runs commands with ``node.transport``."""

    NAME = "hpcvalidate"

    def __init__(self, node: Node, **kwargs: Any):
        super().__init__(node.name, **kwargs)
        self.node = node
        # our transports decode UTF-8; asking the node for its locale would cost a command
        self._encoding = "utf-8"

    def get_hostname(self) -> str:
        return self.node.name

    def run(self, command: str, *args: str, **kwargs: Any) -> base.CommandResult:
        """Run ``command % quoted(args)``; ``timeout=`` (seconds) is honoured, other kwargs ignored."""
        command = self.get_command(command, *args)
        result = self.node.transport.run(command, timeout=kwargs.get("timeout", DEFAULT_TIMEOUT_S))
        return self.result(
            result.exit_code, self.encode(command), result.stdout.encode("utf-8"), result.stderr.encode("utf-8")
        )


def host_for(node: Node) -> testinfra.host.Host:
    """A testinfra ``Host`` whose commands run through ``node.transport``."""
    backend = TransportBackend(node)
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host
