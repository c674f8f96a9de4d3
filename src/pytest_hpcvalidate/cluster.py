"""What a provider hands to the suites: a :class:`Cluster` of :class:`Node` objects.

Suites only see this interface, never a provider: the same check runs against namespaces,
VMs or an existing cluster.
"""

from __future__ import annotations

import functools
import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Literal, Sequence

from .transport import CommandResult, Transport

Role = Literal["controller", "compute"]

#: at most this many nodes are talked to at once by :meth:`Cluster.run_all`
DEFAULT_FANOUT = 64

#: called with every :class:`CommandResult` that :meth:`Node.run` returns, from the thread
#: that ran it (the report plugin turns them into Allure steps of the running test)
COMMAND_OBSERVERS: list[Callable[[CommandResult], None]] = []


@dataclass(eq=False)
class Node:
    """One node: its name and role in the cluster, its address, and how to run commands on it.

    ``transport`` is the fast path the provider prefers (in-namespace exec for the local
    provider, SSH elsewhere); ``ssh`` is the SSH transport when the node runs sshd, so the
    network suites can exercise SSH exactly as an operator would.
    """

    name: str
    role: Role
    address: str
    transport: Transport
    ssh: Transport | None = None
    facts: dict = field(default_factory=dict)
    #: the login user is not root and the config allows ``sudo -n`` for commands that need root
    sudo: bool = False

    def run(self, command: str, timeout: float | None = 60.0, root: bool = False) -> CommandResult:
        """Run ``command`` on the node. ``root``: it needs root; through ``sudo -n`` where the
        node's login user is not root (checks that need root require the ``root`` capability,
        so they never run where neither is possible)."""
        if root and self.sudo:
            command = f"sudo -n sh -c {shlex.quote(command)}"
        return self._observed(self.transport.run(command, timeout=timeout))

    def run_ssh(self, command: str, timeout: float | None = 60.0) -> CommandResult:
        """Run ``command`` over the node's SSH transport (what an operator's ``ssh`` does),
        recorded like :meth:`run`. The caller checks that ``ssh`` is not None."""
        assert self.ssh is not None, f"{self.name}: no SSH transport"
        return self._observed(self.ssh.run(command, timeout=timeout))

    @staticmethod
    def _observed(result: CommandResult) -> CommandResult:
        for observe in COMMAND_OBSERVERS:
            observe(result)
        return result

    @functools.cached_property
    def host(self):
        """A pytest-testinfra ``Host`` over this node's transport."""
        from .transport.testinfra_backend import host_for

        return host_for(self)

    def __repr__(self) -> str:
        return f"Node({self.name!r}, {self.role}, {self.address})"


@dataclass(eq=False)
class Cluster:
    """A running cluster, as provisioned (or attached to) by a provider."""

    name: str
    provider: str
    nodes: list[Node]
    #: a directory every node sees at the same path (jobs' working dirs and binaries go here)
    shared_dir: Path | None = None
    #: how to reach the cluster by hand, printed with --hpc-keep
    access_hint: str = ""

    @property
    def controller(self) -> Node:
        return next(n for n in self.nodes if n.role == "controller")

    @property
    def compute(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "compute"]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node named {name!r} in cluster {self.name!r}")

    def run_all(
        self,
        command: str | Callable[[Node], str],
        nodes: Iterable[Node] | None = None,
        timeout: float | None = 60.0,
        fanout: int = DEFAULT_FANOUT,
    ) -> dict[str, CommandResult]:
        """Run a command on many nodes concurrently (bounded by ``fanout``).

        ``command`` may be a function of the node, for per-node commands. Wall time follows
        the slowest node, not the node count.
        """
        targets: Sequence[Node] = list(self.nodes if nodes is None else nodes)
        if not targets:
            return {}

        def one(n: Node) -> CommandResult:
            cmd = command(n) if callable(command) else command
            return n.run(cmd, timeout=timeout)

        with ThreadPoolExecutor(max_workers=max(1, min(fanout, len(targets)))) as pool:
            results = list(pool.map(one, targets))
        return {n.name: r for n, r in zip(targets, results)}

    def close(self) -> None:
        for n in self.nodes:
            for t in (n.transport, n.ssh):
                if t is not None:
                    t.close()
