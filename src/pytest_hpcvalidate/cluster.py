"""What a provider hands to the suites: a :class:`Cluster` of :class:`Node` objects.

Suites only see this interface, never a provider: the same check runs against namespaces,
VMs or an existing cluster.
"""

from __future__ import annotations

import contextlib
import functools
import shlex
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Sequence

from .transport import CommandResult, Transport

Role = Literal["controller", "compute", "login"]

#: at most this many nodes are talked to at once by :meth:`Cluster.run_all`
DEFAULT_FANOUT = 64

#: called with every :class:`CommandResult` that :meth:`Node.run` returns, from the thread
#: that ran it, and the time it ended (the report plugin turns them into Allure steps of the
#: running test); commands run under :func:`captured_commands` reach them only when replayed
COMMAND_OBSERVERS: list[Callable[..., None]] = []

_capture = threading.local()


@dataclass(frozen=True)
class RanCommand:
    """A command's result and the wall-clock time it ended."""

    result: CommandResult
    stop: float


@contextlib.contextmanager
def captured_commands() -> Iterator[list[RanCommand]]:
    """Commands this thread runs meanwhile are collected in the yielded list instead of
    reaching the observers: work done ahead for several tests (see :meth:`Cluster.map`)
    becomes each test's evidence when that test replays its share (:func:`replay`)."""
    outer = getattr(_capture, "into", None)
    _capture.into = into = []
    try:
        yield into
    finally:
        _capture.into = outer


def replay(commands: Iterable[RanCommand]) -> None:
    """Hand captured commands to the observers now (as the running test's evidence)."""
    for c in commands:
        for observe in COMMAND_OBSERVERS:
            observe(c.result, c.stop)


@dataclass
class NodeOutcome:
    """What a function run on one node by :meth:`Cluster.map` gave: its value or the
    exception it raised, and the commands it ran (when captured)."""

    node: str
    value: Any = None
    error: BaseException | None = None
    commands: list[RanCommand] = field(default_factory=list)

    def get(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


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
        into = getattr(_capture, "into", None)
        if into is not None:
            into.append(RanCommand(result, time.time()))
            return result
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
    #: what the provider had to mend on attaching (printed in the run's summary)
    notes: list[str] = field(default_factory=list)

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

    def map(
        self,
        fn: Callable[[Node], Any],
        nodes: Iterable[Node] | None = None,
        fanout: int = DEFAULT_FANOUT,
        capture: bool = False,
    ) -> dict[str, NodeOutcome]:
        """``fn(node)`` on many nodes concurrently (at most ``fanout`` at once): {node name:
        outcome}, in the nodes' order. One node's exception is that node's outcome, not the
        call's. ``capture``: each node's commands are kept in its outcome (for replay as the
        evidence of that node's test) instead of reaching the observers now. Wall time
        follows the slowest node, not the node count."""
        targets: Sequence[Node] = list(self.nodes if nodes is None else nodes)

        def one(n: Node) -> NodeOutcome:
            out = NodeOutcome(n.name)
            with contextlib.ExitStack() as stack:
                if capture:
                    out.commands = stack.enter_context(captured_commands())
                try:
                    out.value = fn(n)
                except Exception as exc:  # that node's outcome; the others still count
                    out.error = exc
            return out

        if not targets:
            return {}
        with ThreadPoolExecutor(max_workers=max(1, min(fanout, len(targets)))) as pool:
            return {o.node: o for o in pool.map(one, targets)}

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
        outcomes = self.map(lambda n: n.run(command(n) if callable(command) else command, timeout=timeout),
                            nodes, fanout)
        return {name: o.get() for name, o in outcomes.items()}

    def close(self) -> None:
        for n in self.nodes:
            for t in (n.transport, n.ssh):
                if t is not None:
                    t.close()
