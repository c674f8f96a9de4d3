"""The reporting pieces on their own: metric verdicts, categories, properties, labels, sign-off rules."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

from pytest_hpcvalidate.config import load_config
from pytest_hpcvalidate.report import allure_files, labels, signoff
from pytest_hpcvalidate.report.metrics import Metric, evaluate, write_metrics
from pytest_hpcvalidate.report.signoff import OutcomeCollector, TestOutcome, area_verdict


# ----------------------------------------------------------------------------- metrics
@pytest.mark.parametrize(
    "value, threshold, op, passed, message",
    [
        (0.4, 1.0, "<=", True, "rtt on c1 = 0.4 ms (<= 1 ms: ok)"),
        (1.0, 1.0, "<=", True, "rtt on c1 = 1 ms (<= 1 ms: ok)"),
        (3.25, 1.0, "<=", False, "rtt on c1 = 3.25 ms, above the maximum 1 ms"),
        (0.5, 1.0, ">=", False, "rtt on c1 = 0.5 ms, below the minimum 1 ms"),
        (7, None, ">=", True, "rtt on c1 = 7 ms (no threshold)"),
        (float("nan"), 1.0, "<=", False, "rtt on c1 = nan ms: not a number, the threshold is <= 1 ms"),
    ],
)
def test_metric_verdicts(value, threshold, op, passed, message):
    m = evaluate("rtt", value, "ms", threshold, op, node="c1")
    assert (m.passed, m.message) == (passed, message)
    assert bool(m) is passed


def test_metric_rejects_bad_op_and_value():
    with pytest.raises(ValueError, match="op must be"):
        evaluate("x", 1, "s", 2, ">")
    with pytest.raises(ValueError, match="must be a number"):
        evaluate("x", "fast", "s")


def test_metric_round_trips_through_a_dict_and_metrics_json(tmp_path):
    m = evaluate("bw", 9.5, "Gbit/s", 1, ">=", nodeid="suites/l1_network/test_x.py::test_bw")
    assert Metric.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    nan = evaluate("lat", math.nan, "us")
    write_metrics(tmp_path / "metrics.json", [m, nan], cluster="t")
    doc = json.loads((tmp_path / "metrics.json").read_text())  # strict JSON: NaN became null
    assert doc["cluster"] == "t"
    assert doc["metrics"][0]["nodeid"].endswith("::test_bw") and doc["metrics"][1]["value"] is None


# ----------------------------------------------------------------------------- allure files
@pytest.mark.parametrize(
    "status, message, expected",
    [
        ("failed", "AssertionError: c1 cannot reach c2 (10.9.0.12): 100% loss\nassert not [...]", ["Product defects"]),
        ("failed", "pytest_hpcvalidate.report.metrics.MetricFailure: rtt on c1 = 3 ms, above the maximum 1 ms",
         ["Product defects"]),
        ("failed", "Failed: metric missed its threshold: bw on c1 = 0.2 Gbit/s, below the minimum 1 Gbit/s",
         ["Product defects"]),
        ("failed", "Failed: provisioning the local cluster 't' failed: bridge br-t exists", ["Infrastructure errors"]),
        ("broken", "pytest_hpcvalidate.transport.TransportError: c1: connection refused", ["Infrastructure errors"]),
        ("broken", "subprocess.TimeoutExpired: Command 'srun' timed out after 30 seconds", ["Infrastructure errors"]),
        ("failed", "AssertionError: sinfo timed out on ctl", ["Infrastructure errors"]),
        ("skipped", "Skipped: blocked by l1_network::test_x (L1 Nodes, networking and PCIe failed)", ["Blocked by a lower layer"]),
        ("skipped", "Skipped: requires gpu: the config declares no GPUs", ["Not applicable"]),
        ("failed", "Failed: metric regressed from its baseline: bw on c1 = 0.2 Gbit/s, regressed from 9 Gbit/s",
         ["Product defects"]),
        ("failed", "pytest_hpcvalidate.transport.base.CommandFailed: on c1: `sinfo` exit 1 after 0.01s", ["Product defects"]),
        ("failed", "Failed: --hpc-reuse: cannot attach to local cluster 't': no running local cluster", ["Infrastructure errors"]),
        ("failed", "hpcvalidate sign-off: FAIL (slurm FAIL, cgroup BLOCKED)", ["Not signed off"]),
        ("broken", "KeyError: 'CPUs'", []),  # a bug in a probe: Allure's own "Test defects"
        ("passed", None, []),
    ],
)
def test_categories_separate_defects_infrastructure_blocked_and_not_applicable(status, message, expected):
    assert allure_files.category_of(status, message) == expected


def test_categories_file_is_what_allure_reads(tmp_path):
    doc = json.loads(allure_files.write_categories(tmp_path).read_text())
    assert [c["name"] for c in doc] == [
        "Not signed off", "Infrastructure errors", "Product defects", "Blocked by a lower layer", "Not applicable",
    ]
    assert all(set(c) <= {"name", "description", "matchedStatuses", "messageRegex", "traceRegex", "flaky"} for c in doc)


def test_environment_properties_escape_like_java():
    text = allure_files.properties_text({"cluster": "t", "odd key": "a=b: c", "kernel": "6.1.0 é", "lead": " x"})
    assert text == "cluster=t\nodd\\ key=a=b: c\nkernel=6.1.0 \\u00e9\nlead=\\ x\n"
    text.encode("ascii")


# ----------------------------------------------------------------------------- labels
CFG = "name: t\nnetwork: {subnet: 10.9.0.0/24, bridge: br-t}\ncompute:\n  - names: c[1-2],c10,gpu-1,gpu\n"


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(CFG)
    return load_config(str(path))


def _item(name, params=None, param_id=None, marks=()):
    callspec = SimpleNamespace(params=params or {}, id=param_id) if param_id is not None else None
    item = SimpleNamespace(name=name, originalname=name.split("[")[0], iter_markers=lambda n: list(marks))
    if callspec is not None:
        item.callspec = callspec
    return item


@pytest.mark.parametrize(
    "params, param_id, nodes",
    [
        ({"node_name": "c1"}, "c1", ["c1"]),
        ({"pair": "c1-c10"}, "c1-c10", ["c1", "c10"]),
        ({"src": "gpu-1", "dst": "c2"}, "gpu-1-c2", ["c2", "gpu-1"]),
        ({"pair": ("gpu", "ctl")}, "gpu->ctl", ["ctl", "gpu"]),
        ({"size": 64}, "64", []),
        ({"x": "c100"}, "c100", []),
    ],
)
def test_node_tags_come_from_the_parametrization(model, params, param_id, nodes):
    item = _item(f"test_x[{param_id}]", params, param_id)
    assert labels.nodes_in(item, [n.name for n in model.resolved_nodes()]) == nodes


def test_labels_for_a_required_and_an_optional_area(model):
    item = _item("test_reach[c1]", {"node_name": "c1"}, "c1")
    assert labels.labels_for(item, 1, "network", model) == [
        ("epic", "L1 Nodes, networking and PCIe"),
        ("feature", "network"),
        ("story", "test_reach"),
        ("severity", "critical"),
        ("tag", "local"),
        ("tag", "c1"),
    ]
    storage = dict(labels.labels_for(_item("test_mount"), 5, "storage", model))
    assert storage["severity"] == "normal" and storage["epic"] == "L5 Shared storage and monitoring"


def test_labels_set_by_hand_win(model):
    own = SimpleNamespace(kwargs={"label_type": "severity"}, args=("blocker",))
    pairs = labels.labels_for(_item("test_x", marks=[own]), 2, "slurm", model)
    assert "severity" not in dict(pairs)


# ----------------------------------------------------------------------------- sign-off rules
def _t(outcome, area="network", message=""):
    return TestOutcome(f"suites/l1_{area}/test_x.py::test_{outcome}", 1, area, outcome, message)


@pytest.mark.parametrize(
    "outcomes, verdict",
    [
        (["passed", "passed"], "PASS"),
        (["passed", "skipped"], "PASS"),  # a not-applicable skip does not block sign-off
        (["passed", "failed"], "FAIL"),
        (["passed", "error"], "FAIL"),
        (["blocked", "failed"], "FAIL"),
        (["blocked", "blocked"], "BLOCKED"),
        (["passed", "blocked"], "BLOCKED"),
        (["blocked", "skipped"], "BLOCKED"),
        (["skipped", "xfailed"], "NOT-RUN"),
        (["incomplete"], "NOT-RUN"),
        ([], "NOT-RUN"),
    ],
)
def test_area_verdicts(outcomes, verdict):
    assert area_verdict([_t(o) for o in outcomes]) == verdict


def _report(nodeid, when, outcome, longrepr=None, **extra):
    return SimpleNamespace(
        nodeid=nodeid, when=when, outcome=outcome, passed=outcome == "passed", failed=outcome == "failed",
        skipped=outcome == "skipped", longrepr=longrepr, longreprtext=str(longrepr or ""), **extra,
    )


def test_collector_folds_phases_into_one_outcome():
    c = OutcomeCollector()
    place = {"hpc_place": {"layer": 1, "area": "network"}}
    for r in [
        _report("a", "setup", "passed", **place), _report("a", "call", "passed", **place),
        _report("a", "teardown", "failed", "E   RuntimeError: cleanup failed\nmore", **place),
        _report("b", "setup", "skipped", ("f.py", 1, "Skipped: blocked by l1_network::test_x (L1 failed)"), **place),
        _report("c", "setup", "passed", **place),
        _report("c", "call", "failed", SimpleNamespace(reprcrash=SimpleNamespace(message="AssertionError: no route\nassert 0")),
                hpc_metrics=[evaluate("rtt", 3, "ms", 1, "<=").to_dict()], **place),
        _report("d", "setup", "passed"), _report("d", "call", "skipped", ("f.py", 2, "Skipped: x"), wasxfail="known"),
    ]:
        c.add(r)
    got = {k: (t.outcome, t.message) for k, t in c.tests.items()}
    assert got == {
        "a": ("error", "RuntimeError: cleanup failed"),
        "b": ("blocked", "blocked by l1_network::test_x (L1 failed)"),
        "c": ("failed", "no route"),
        "d": ("xfailed", "known"),
    }
    assert c.tests["c"].metrics[0].name == "rtt" and c.tests["c"].area == "network"


def test_collection_error_fails_its_area(model):
    c = OutcomeCollector()
    c.add_collect_error("suites/l2_slurm/test_reg.py", "ImportError while importing test module\n...")
    s = signoff.compute(c.tests.values(), model, {"cluster": "t"})
    assert {a.area: a.verdict for a in s.areas} == {"nodes": "NOT-RUN", "network": "NOT-RUN", "slurm": "FAIL",
                                                     "cgroup": "NOT-RUN", "mpi": "NOT-RUN"}
    assert not s.passed


def test_signoff_needs_every_required_area_and_run_metrics(model):
    tests = [_t("passed", a) for a in ("nodes", "network", "slurm", "cgroup", "mpi")] + [_t("failed", "storage")]
    s = signoff.compute(tests, model, {})
    assert s.passed and s.verdict == "PASS"
    assert [(a.area, a.required, a.verdict) for a in s.areas][-1] == ("storage", False, "FAIL")
    slow = signoff.compute(tests, model, {}, run_metrics=[evaluate("provision_s", 90, "s", 60, "<=")])
    assert not slow.passed
    md = signoff.markdown(slow)
    assert "| storage | L5 Shared storage and monitoring | no | **FAIL** |" in md and "provision_s" in md


def test_terminal_table_keeps_test_ids_literal(model):
    tests = [_t("failed", "network", message="c1 [down]")]
    lines = signoff.terminal_lines(signoff.compute(tests, model, {}), width=200, markup=False)
    assert any("FAIL" in line and "l1_network::test_failed: c1 [down]" in line for line in lines), lines
    assert not any("\x1b[" in line for line in lines)
