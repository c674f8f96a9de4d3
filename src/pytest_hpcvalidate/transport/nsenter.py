"""Run commands inside a node's Linux namespaces with ``nsenter`` (the local provider's fast path)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from ._subprocess import run_argv
from .base import CommandResult, Transport, TransportError

#: ``namespaces`` letters and the nsenter option that enters each
NAMESPACE_FLAGS = {
    "n": "--net",
    "m": "--mount",
    "u": "--uts",
    "i": "--ipc",
    "p": "--pid",
    "C": "--cgroup",
    "U": "--user",
    "T": "--time",
}


class NsenterTransport(Transport):
    """``nsenter -t <pid> -n -m -u -- /bin/sh -c <command>``.

    ``pid`` is any process living in the node's namespaces (its anchor); ``namespaces`` picks
    which of them to enter by letter (default ``"nmu"``: network, mount, UTS). ``env`` is the
    command's whole environment (default: this process's).

    An ``nsenter`` that cannot enter the namespaces (the anchor is gone, no permission) is a
    :class:`TransportError`, not a command failure.
    """

    def __init__(
        self,
        node: str,
        pid: int,
        namespaces: str = "nmu",
        env: Mapping[str, str] | None = None,
    ):
        unknown = sorted(set(namespaces) - NAMESPACE_FLAGS.keys())
        if unknown or not namespaces:
            raise ValueError(f"namespaces must be letters from {''.join(NAMESPACE_FLAGS)!r}, got {namespaces!r}")
        self.node = node
        self.pid = int(pid)
        self.namespaces = namespaces
        self.env = env
        self._prefix = ["nsenter", "-t", str(self.pid), *(NAMESPACE_FLAGS[c] for c in namespaces), "--"]

    def run(self, command: str, timeout: float | None = 60.0) -> CommandResult:
        if not os.path.exists(f"/proc/{self.pid}"):
            raise TransportError(self.node, f"namespace anchor process {self.pid} is gone (node stopped?)")
        result = run_argv(self.node, [*self._prefix, "/bin/sh", "-c", command], command, timeout, self.env)
        # nsenter reports its own failures on stderr with this prefix before anything else runs
        if not result.ok and not result.timed_out and result.stderr.startswith("nsenter: "):
            raise TransportError(self.node, f"cannot enter the namespaces of pid {self.pid}: {result.stderr.strip()}")
        return result

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"NsenterTransport({self.node!r}, pid={self.pid}, namespaces={self.namespaces!r})"
