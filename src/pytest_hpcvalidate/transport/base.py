"""The transport interface shared by every way of reaching a node."""

from __future__ import annotations

import abc
from dataclasses import dataclass


class TransportError(RuntimeError):
    """The node could not be reached (connection refused, host key mismatch, timeout).

    An infrastructure error, not a product defect: reports file it under "infrastructure".
    """

    def __init__(self, node: str, message: str):
        super().__init__(f"{node}: {message}")
        self.node = node
        self.message = message


@dataclass(frozen=True)
class CommandResult:
    """What one command did on one node."""

    node: str
    command: str
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def check(self) -> "CommandResult":
        """Return self when the command succeeded, else raise :class:`CommandFailed`."""
        if not self.ok:
            raise CommandFailed(self)
        return self

    def describe(self, limit: int = 400) -> str:
        """One operator-readable line: where, what, how it ended, the tail of stderr."""
        how = "timed out" if self.timed_out else f"exit {self.exit_code}"
        tail = (self.stderr.strip() or self.stdout.strip())[-limit:]
        return f"on {self.node}: `{self.command}` {how} after {self.duration_s:.2f}s" + (
            f": {tail}" if tail else ""
        )


class CommandFailed(AssertionError):
    """A command that had to succeed did not; the message says where and why."""

    def __init__(self, result: CommandResult):
        super().__init__(result.describe())
        self.result = result


class Transport(abc.ABC):
    """Runs shell commands on one node."""

    #: the node's name, used in every message
    node: str

    @abc.abstractmethod
    def run(self, command: str, timeout: float | None = 60.0) -> CommandResult:
        """Run ``command`` through ``/bin/sh -c`` on the node; never raises for a non-zero exit.

        Raises :class:`TransportError` when the node cannot be reached at all.
        """

    def close(self) -> None:  # pragma: no cover - default is stateless
        """Release connections; the transport may be used again afterwards (it reconnects)."""
