"""Per-node checks gathered ahead: one test per node in the report, one concurrent pass over
the nodes in wall time.

A per-node check (``test_x[c7]``) is one test per node, so a report names the node that is
wrong. Run one after another, their wall time is the sum over the nodes: minutes of pings on
a few hundred nodes. The ``each_node`` fixture keeps the report's shape and takes the time
of the slowest node: the first test of a check to call ``each_node(probe)`` runs ``probe`` on
the nodes of every selected test of that check at once (:meth:`Cluster.map`), keeping each
node's value, or exception, and commands; each test then takes its own node's share and
replays its commands as its own evidence, so every test's Allure steps still show exactly
the commands that decided it.

``probe(node)`` must depend on nothing but the node it is given (not on the test's own node,
which differs between the tests sharing one pass). Under pytest-xdist a check's tests are
spread over workers, so each runs ``probe`` on its own node only.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from .cluster import Cluster, Node, NodeOutcome, replay

#: the parameters that make a test per-node (see plugin.NODE_PARAMS)
NODE_PARAM_NAMES = ("node_name", "compute_name", "peer_name", "login_name", "gpu_node_name", "monitored_name")

_GATHERED = pytest.StashKey[dict]()


def _node_param(item: pytest.Item) -> tuple[str, str] | None:
    params = getattr(getattr(item, "callspec", None), "params", {})
    for name in NODE_PARAM_NAMES:
        if params.get(name) is not None:
            return name, params[name]
    return None


def _check_key(item: pytest.Item, param: str) -> tuple:
    """What the tests of one per-node check share: module, function, other parameters."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    others = tuple(sorted((k, repr(v)) for k, v in params.items() if k != param))
    return (str(item.path), getattr(item, "originalname", item.name), param, others)


def siblings(item: pytest.Item, items: list[pytest.Item]) -> list[str]:
    """The node names of the selected tests of ``item``'s per-node check, in run order."""
    mine = _node_param(item)
    if mine is None:
        return []
    key = _check_key(item, mine[0])
    names = []
    for other in items:
        p = _node_param(other)
        if p is not None and p[0] == mine[0] and _check_key(other, p[0]) == key and p[1] not in names:
            names.append(p[1])
    return names


def gather(request: pytest.FixtureRequest, cluster: Cluster, probe: Callable[[Node], Any]) -> Any:
    """``probe`` on this test's node, run together with its sibling tests' nodes the first
    time; this node's value (or its exception raised here), its commands replayed now."""
    item = request.node
    mine = _node_param(item)
    if mine is None:
        raise TypeError(f"{item.nodeid}: each_node() needs a per-node test (node, compute_node or gpu_node)")
    name = mine[1]
    if hasattr(request.config, "workerinput"):
        return probe(cluster.node(name))
    store = request.config.stash.setdefault(_GATHERED, {})
    key = (*_check_key(item, mine[0]), getattr(probe, "__code__", probe))
    if key not in store:  # the first test of its check: every selected node of it at once
        names = siblings(item, request.session.items)
        names += [] if name in names else [name]
        store[key] = cluster.map(probe, [cluster.node(n) for n in names], capture=True)
    pending: dict[str, NodeOutcome] = store[key]
    if name not in pending:  # this test runs a second time (a rerun): on its own node alone
        pending.update(cluster.map(probe, [cluster.node(name)], capture=True))
    outcome = pending.pop(name)
    replay(outcome.commands)
    return outcome.get()
