"""``--hpc-baseline``: a metric worse than the earlier run's by more than the tolerance fails,
naming the metric, node, value before and now, and the tolerance; direction from its op."""

from __future__ import annotations

import json

import pytest
from reportkit import results, run, signoff, write_suites

from pytest_hpcvalidate.report.baseline import Baseline, BaselineError, compare, load, metric_key
from pytest_hpcvalidate.report.metrics import evaluate

NODEID = "suites/l1_network/test_reach.py::test_bandwidth[c1->c2]"


def base(**values: float) -> Baseline:
    return Baseline("b.json", "t", {metric_key(name, "c1->c2", NODEID): v for name, v in values.items()})


@pytest.mark.parametrize(
    "name, before, now, op, regressed, change",
    [
        ("bw", 10.0, 8.5, ">=", False, -15.0),  # higher is better, 15% lower: within 20%
        ("bw", 10.0, 7.0, ">=", True, -30.0),
        ("bw", 10.0, 30.0, ">=", False, 200.0),  # better
        ("lat", 10.0, 11.9, "<=", False, 19.0),  # lower is better, 19% higher: within
        ("lat", 10.0, 12.5, "<=", True, 25.0),
        ("lat", 10.0, 2.0, "<=", False, -80.0),  # better
    ],
)
def test_direction_and_tolerance(name, before, now, op, regressed, change):
    m = compare(evaluate(name, now, "u", None, op, "c1->c2", NODEID), base(**{name: before}), 20)
    assert (m.regressed, m.passed, m.baseline, m.change_pct) == (regressed, not regressed, before, change)


def test_the_message_names_metric_node_before_now_and_tolerance():
    m = compare(evaluate("bw", 0.19, "Gbit/s", 1, ">=", "c1->c2", NODEID), base(bw=9.41), 10)
    assert m.message == (
        "bw on c1->c2 = 0.19 Gbit/s, below the minimum 1 Gbit/s; bw on c1->c2 = 0.19 Gbit/s, regressed from "
        "9.41 Gbit/s in the baseline (-98.0%; tolerance 10%, higher is better)"
    )


def test_metrics_the_baseline_lacks_or_cannot_compare_keep_their_own_verdict():
    fresh = evaluate("new", 1, "s", 2, "<=", "c1->c2", NODEID)
    assert compare(fresh, base(bw=1.0), 10) == fresh
    zero = compare(evaluate("loss", 5, "%", None, "<=", "c1->c2", NODEID), base(loss=0.0), 10)
    assert zero.passed and zero.baseline == 0.0 and zero.change_pct is None
    # the same check run from another directory still matches: the key is l1_network::test[...]
    moved = evaluate("bw", 1, "u", None, ">=", "c1->c2", "../../x/suites/l1_network/test_reach.py::test_bandwidth[c1->c2]")
    assert compare(moved, base(bw=10.0), 10).regressed


@pytest.mark.parametrize(
    "text, error",
    [
        (None, "cannot read it"),
        ("{", "not JSON (line 1"),
        ('{"cluster": "t"}', "has no 'metrics' list"),
        ('{"metrics": [{"value": 1}]}', "metrics[0].name: missing"),
        ('{"metrics": [{"name": "x", "value": "fast"}]}', "metrics[0].value: must be a number, got 'fast'"),
    ],
)
def test_unusable_baseline_files_are_one_line_errors(tmp_path, text, error):
    path = tmp_path / "metrics.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(BaselineError) as exc:
        load(path)
    assert str(exc.value).startswith(f"--hpc-baseline {path}: {error}")
    assert "\n" not in str(exc.value) and "earlier run wrote" in str(exc.value)


MEASURING = {
    "suites/l1_network/test_measure.py": """
        import json, pytest

        VALUES = json.load(open("values.json"))

        @pytest.mark.parametrize("pair", ["c1->c2", "c2->ctl"])
        def test_bandwidth(pair, metric):
            m = metric("bw_gbps", VALUES[pair], "Gbit/s", 0.01, ">=", node=pair)
            assert m.passed, m.message

        def test_latency(metric):
            metric("rtt_ms", VALUES["rtt"], "ms", 5, "<=", node="c1")  # not asserted: the plugin fails it
    """,
}


def test_a_run_compared_with_its_baseline(pytester):
    cfg = write_suites(pytester, MEASURING)
    cfg.write_text(cfg.read_text() + "signoff: {required: [network]}\nthresholds: {regression_tolerance_pct: 25}\n")
    values = pytester.path / "values.json"
    values.write_text(json.dumps({"c1->c2": 9.4, "c2->ctl": 9.0, "rtt": 0.2}))
    first, before = run(pytester, cfg, "before")
    assert first.ret == 0

    values.write_text(json.dumps({"c1->c2": 9.0, "c2->ctl": 9.5, "rtt": 0.22}))  # within 25%
    same, _ = run(pytester, cfg, "same", "--hpc-baseline", str(before / "metrics.json"))
    assert same.ret == 0

    values.write_text(json.dumps({"c1->c2": 0.2, "c2->ctl": 9.2, "rtt": 0.4}))  # a throttled link, a slower ping
    worse, out = run(pytester, cfg, "worse", "--hpc-baseline", "before/metrics.json")  # relative to the run dir
    worse.assert_outcomes(passed=1, failed=2)
    assert worse.ret == 1 and signoff(out)["verdicts"] == {"network": "FAIL"}
    worse.stdout.fnmatch_lines([
        "E * bw_gbps on c1->c2 = 0.2 Gbit/s, regressed from 9.4 Gbit/s in the baseline "
        "(-97.9%; tolerance 25%, higher is better)*",
        "*metric regressed from its baseline: rtt_ms on c1 = 0.4 ms, regressed from 0.2 ms in the baseline "
        "(+100.0%; tolerance 25%, lower is better)*",
    ])
    metrics = {m["node"]: m for m in json.loads((out / "metrics.json").read_text())["metrics"]}
    assert metrics["c2->ctl"]["passed"] and metrics["c2->ctl"]["baseline"] == 9.0
    assert metrics["c1->c2"]["regressed"] and metrics["c1->c2"]["change_pct"] == pytest.approx(-97.872, abs=0.001)
    assert "| network | `l1_network::test_bandwidth[c1->c2]` | bw_gbps | c1->c2 | 0.2 Gbit/s | >= 0.01 Gbit/s " \
           "| 9.4 Gbit/s (-97.9%) | **FAILED** |" in (out / "signoff.md").read_text()
    step = next(s for s in results(out)["test_bandwidth[c1->c2]"]["steps"] if s["name"].startswith("metric"))
    assert step["status"] == "failed" and {"name": "baseline", "value": "9.4 Gbit/s (-97.9%)"} in step["parameters"]


def test_a_missing_baseline_file_is_a_usage_error(pytester):
    cfg = write_suites(pytester, MEASURING)
    result, _ = run(pytester, cfg, "out", "--hpc-baseline", "nope.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --hpc-baseline */nope.json: cannot read it (No such file or directory); pass *"])
    assert "Traceback" not in result.stderr.str()
