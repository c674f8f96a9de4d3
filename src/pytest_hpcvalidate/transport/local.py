"""Run commands on this machine (on-node mode: the validator runs on the node it checks)."""

from __future__ import annotations

from ._subprocess import run_argv
from .base import CommandResult, Transport


class LocalTransport(Transport):
    """``/bin/sh -c <command>`` as a child of this process."""

    def __init__(self, node: str = "localhost"):
        self.node = node

    def run(self, command: str, timeout: float | None = 60.0) -> CommandResult:
        return run_argv(self.node, ["/bin/sh", "-c", command], command, timeout)

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"LocalTransport({self.node!r})"
