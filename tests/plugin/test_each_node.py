"""``each_node``: a per-node check's tests share one concurrent pass over their nodes, and
each test still reports exactly its own node's value, exception and commands.

The dummy suite reaches its "nodes" with the real local transport (real commands on this
machine), as the report tests do.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))

from reportkit import results, run, write_suites  # noqa: E402

CONFTEST = """
import pytest
from pytest_hpcvalidate.cluster import Cluster, Node
from pytest_hpcvalidate.transport.local import LocalTransport

@pytest.fixture(scope="session")
def cluster():
    return Cluster("t", "local", [Node(n, "compute", "127.0.0.1", LocalTransport(n)) for n in ("c1", "c2")])
"""

CHECKS = """
import os, time

LOG = os.environ["EACH_LOG"]

def probe(n):
    start = time.time()
    out = n.run(f"sleep 0.4; echo from-{n.name}").stdout.strip()
    with open(LOG, "a") as fh:
        fh.write(f"{n.name} {start} {time.time()}\\n")
    if n.name == "c2" and os.environ.get("EACH_BREAK"):
        raise RuntimeError("c2 is broken")
    return out

def test_check(compute_node, each_node):
    assert each_node(probe) == f"from-{compute_node.name}"
"""


def _run(pytester, monkeypatch, tmp_path, *args, broken=False):
    log = tmp_path / "probe.log"
    monkeypatch.setenv("EACH_LOG", str(log))
    if broken:
        monkeypatch.setenv("EACH_BREAK", "1")
    cfg = write_suites(pytester, {"suites/conftest.py": CONFTEST, "suites/l1_network/test_each.py": CHECKS})
    result, out = run(pytester, cfg, "out", *args)
    lines = [ln.split() for ln in log.read_text().splitlines()] if log.exists() else []
    return result, out, {name: (float(a), float(b)) for name, a, b in lines}, len(lines)


def test_the_nodes_are_probed_at_once_and_each_test_keeps_its_own_evidence(pytester, monkeypatch, tmp_path):
    result, out, spans, probes = _run(pytester, monkeypatch, tmp_path)
    result.assert_outcomes(passed=2)
    assert probes == 2 and set(spans) == {"c1", "c2"}  # once per node, not once per test
    (s1, e1), (s2, e2) = spans["c1"], spans["c2"]
    assert s1 < e2 and s2 < e1, f"the two nodes were probed one after the other: {spans}"
    docs = results(out)
    for name in ("c1", "c2"):
        steps = [s["name"].split(" → ")[0] for s in docs[f"test_check[{name}]"].get("steps", [])]
        assert steps == [f"{name}: `sleep 0.4; echo from-{name}`"], steps


def test_one_nodes_exception_fails_only_that_nodes_test(pytester, monkeypatch, tmp_path):
    result, _, _, _ = _run(pytester, monkeypatch, tmp_path, broken=True)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*RuntimeError: c2 is broken*", "FAILED *test_check?c2? - RuntimeError*"])


def test_only_the_selected_tests_nodes_are_probed(pytester, monkeypatch, tmp_path):
    result, _, spans, probes = _run(pytester, monkeypatch, tmp_path, "-k", "c2")
    result.assert_outcomes(passed=1)
    assert probes == 1 and set(spans) == {"c2"}


# -- which tests share a pass: ahead.siblings over made-up collections ------------------------
from dataclasses import dataclass, field  # noqa: E402

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pytest_hpcvalidate import ahead  # noqa: E402


@dataclass
class _CallSpec:
    params: dict


@dataclass
class _Item:
    path: str
    originalname: str
    callspec: _CallSpec
    name: str = field(default="")


_items = st.lists(st.builds(
    lambda path, fn, param, node, other: _Item(path, fn, _CallSpec({param: node, **({"size": other} if other else {})})),
    st.sampled_from(["a.py", "b.py"]), st.sampled_from(["test_x", "test_y"]),
    st.sampled_from(list(ahead.NODE_PARAM_NAMES)), st.sampled_from(["c1", "c2", "c3", "ctl"]),
    st.sampled_from([None, 1, 2])), min_size=1, max_size=30)


@given(_items, st.data())
def test_siblings_are_exactly_the_same_checks_nodes_in_run_order(items, data):
    me = data.draw(st.sampled_from(items))
    got = ahead.siblings(me, items)
    param = next(k for k in ahead.NODE_PARAM_NAMES if k in me.callspec.params)
    others = {k: v for k, v in me.callspec.params.items() if k != param}
    want: list[str] = []
    for it in items:
        p = it.callspec.params
        same = (it.path == me.path and it.originalname == me.originalname and param in p
                and {k: v for k, v in p.items() if k != param} == others)
        if same and p[param] not in want:
            want.append(p[param])
    assert got == want and me.callspec.params[param] in got
