"""The reporting plugin as a run meets it: dummy layered suites driven through ``pytester``."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from reportkit import CLUSTER, NO_HYPOTHESIS, label_map, results, run, signoff, write_suites

PASSING = {
    "suites/l1_network/test_reach.py": """
        import pytest

        @pytest.mark.parametrize("pair", ["c1-c2", "c2-ctl"])
        def test_pair_reachable(pair, metric):
            m = metric("ping_rtt_p50_ms", 0.2, "ms", 1.0, "<=", node=pair.split("-")[0])
            assert m.passed, m.message

        def test_bandwidth(metric):
            m = metric("bandwidth_gbps", 9.4, "Gbit/s", 1.0, ">=")
            assert m.passed, m.message
    """,
    "suites/l1_nodes/test_image.py": "def test_same_image(): pass\n",
    "suites/l2_slurm/test_reg.py": "def test_nodes_registered(): pass\n",
    "suites/l3_cgroup/test_cores.py": "def test_cores_constrained(): pass\n",
    "suites/l4_mpi/test_pingpong.py": "def test_pingpong(): pass\n",
    "suites/l5_storage/test_mount.py": "def test_mounted(): pass\n",  # not declared: not required
}


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # the sign-off table on one line per area


# ----------------------------------------------------------------------------- labels
def test_every_placed_test_gets_layer_area_check_severity_and_node_labels(pytester):
    cfg = write_suites(pytester, PASSING)
    result, out = run(pytester, cfg)
    result.assert_outcomes(passed=8)
    docs = results(out)
    reach = label_map(docs["test_pair_reachable[c2-ctl]"])
    assert reach["epic"] == ["L1 Nodes, networking and PCIe"]
    assert reach["feature"] == ["network"]
    assert reach["story"] == ["test_pair_reachable"]
    assert reach["severity"] == ["critical"]
    assert set(reach["tag"]) == {"local", "c2", "ctl"}
    storage = label_map(docs["test_mounted"])
    assert (storage["epic"], storage["feature"], storage["severity"]) == (["L5 Shared storage and monitoring"], ["storage"], ["normal"])
    assert {"name": "cluster", "value": "'t'"} in docs["test_mounted"]["parameters"]


def test_blocked_tests_carry_labels_too(pytester):
    files = dict(PASSING, **{"suites/l1_network/test_reach.py": "def test_pair_reachable(): assert False, 'c1 cannot reach c2'\n"})
    cfg = write_suites(pytester, files)
    _, out = run(pytester, cfg)
    blocked = results(out)["test_nodes_registered"]
    assert blocked["status"] == "skipped" and "blocked by" in blocked["statusDetails"]["message"]
    assert label_map(blocked)["epic"] == ["L2 Slurm registration"]
    assert label_map(blocked)["feature"] == ["slurm"]


def test_history_ids_are_stable_across_runs_and_differ_between_clusters(pytester):
    cfg = write_suites(pytester, PASSING)
    run(pytester, cfg, "run1")
    run(pytester, cfg, "run2")
    other = pytester.path / "cluster-u.yaml"
    other.write_text(CLUSTER.format(name="u"))
    run(pytester, other, "run3")
    first, second, third = (
        {name: d["historyId"] for name, d in results(pytester.path / run_).items()} for run_ in ("run1", "run2", "run3")
    )
    assert len(first) == 8 and len(set(first.values())) == 8
    assert first == second
    assert set(first) == set(third) and not set(first.values()) & set(third.values())


# ----------------------------------------------------------------------------- metrics
def test_metrics_are_attached_and_collected_into_metrics_json(pytester):
    cfg = write_suites(pytester, PASSING)
    _, out = run(pytester, cfg)
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["cluster"] == "t"
    by_test = {(m["nodeid"].split("::")[1], m["name"]): m for m in doc["metrics"]}
    bw = by_test[("test_bandwidth", "bandwidth_gbps")]
    assert bw == {
        "name": "bandwidth_gbps", "value": 9.4, "unit": "Gbit/s", "threshold": 1.0, "op": ">=", "node": None,
        "nodeid": "suites/l1_network/test_reach.py::test_bandwidth", "passed": True,
        "message": "bandwidth_gbps = 9.4 Gbit/s (>= 1 Gbit/s: ok)",
        "baseline": None, "change_pct": None, "regressed": False,
    }
    assert by_test[("test_pair_reachable[c2-ctl]", "ping_rtt_p50_ms")]["node"] == "c2"
    step = results(out)["test_bandwidth"]["steps"][0]
    assert step["name"] == "metric bandwidth_gbps: 9.4 Gbit/s (>= 1) ok" and step["status"] == "passed"
    attachment = step["attachments"][0]
    assert attachment["type"] == "application/json"
    assert json.loads((out / "allure-results" / attachment["source"]).read_text())["value"] == 9.4


def test_a_metric_over_its_threshold_fails_its_test_with_the_message(pytester):
    files = dict(PASSING)
    files["suites/l1_network/test_reach.py"] = """
        def test_latency(metric):
            m = metric("ping_rtt_p99_ms", 7.5, "ms", 5.0, "<=", node="c1")
            assert m.passed, m.message

        def test_forgot_to_assert(metric):
            metric("bandwidth_gbps", 0.2, "Gbit/s", 1.0, ">=", node="c2")
    """
    cfg = write_suites(pytester, files)
    result, out = run(pytester, cfg)
    result.assert_outcomes(passed=1, failed=2, skipped=4)  # passed: l1_nodes
    result.stdout.fnmatch_lines([
        "E   *AssertionError: ping_rtt_p99_ms on c1 = 7.5 ms, above the maximum 5 ms",
        "*_ test_forgot_to_assert _*",
        "metric missed its threshold: bandwidth_gbps on c2 = 0.2 Gbit/s, below the minimum 1 Gbit/s",
    ])
    metrics = {m["name"]: m for m in json.loads((out / "metrics.json").read_text())["metrics"]}
    assert metrics["ping_rtt_p99_ms"]["passed"] is False and metrics["bandwidth_gbps"]["passed"] is False
    docs = results(out)
    assert docs["test_latency"]["status"] == "failed"
    assert docs["test_latency"]["steps"][0]["status"] == "failed"
    assert docs["test_forgot_to_assert"]["statusDetails"]["message"].startswith("Failed: metric missed its threshold: ")
    assert docs["test_forgot_to_assert"]["steps"][0]["status"] == "failed"
    network = next(a for a in signoff(out)["areas"] if a["area"] == "network")
    assert [f["message"] for f in network["failures"]] == [
        "ping_rtt_p99_ms on c1 = 7.5 ms, above the maximum 5 ms",
        "metric missed its threshold: bandwidth_gbps on c2 = 0.2 Gbit/s, below the minimum 1 Gbit/s",
    ]
    assert len(network["metrics"]) == 2


def test_metric_fixture_works_outside_suites_too(pytester):
    cfg = write_suites(pytester, {})
    pytester.makepyfile(test_plain="def test_x(metric):\n    assert metric('x', 1, 's', 2, '<=').passed\n")
    result = pytester.runpytest(*NO_HYPOTHESIS, "--hpc-config", str(cfg), "--hpc-report-dir", "out", "test_plain.py")
    result.assert_outcomes(passed=1)


# ----------------------------------------------------------------------------- sign-off
def test_all_required_areas_pass_exit_zero(pytester):
    cfg = write_suites(pytester, PASSING)
    result, out = run(pytester, cfg)
    assert result.ret == 0
    s = signoff(out)
    assert s["verdict"] == "PASS" and s["exit_code"] == 0
    assert s["verdicts"] == {"nodes": "PASS", "network": "PASS", "slurm": "PASS", "cgroup": "PASS", "mpi": "PASS"}
    network = s["areas"][1]
    assert network["counts"]["passed"] == 3 and network["counts"]["total"] == 3
    assert s["fingerprint"]["cluster"] == "t" and s["fingerprint"]["nodes"] == "3"
    md = (out / "signoff.md").read_text()
    assert "# Sign-off: cluster `t`: PASS" in md
    assert "| network | L1 Nodes, networking and PCIe | yes | **PASS** | 3 | 0 | 0 | 0 |" in md
    assert "| storage | L5 Shared storage and monitoring | no | **PASS** |" in md
    result.stdout.fnmatch_lines(["*hpcvalidate sign-off: PASS (cluster 't')*", "*L1 network*PASS*3*",
                                 f"HTML report: python -m pytest_hpcvalidate report {out}"])


def test_a_failure_fails_its_area_blocks_those_above_and_exits_non_zero(pytester):
    files = dict(PASSING)
    files["suites/l2_slurm/test_reg.py"] = "def test_nodes_registered():\n    assert False, 'c2 is not registered (State=DOWN)'\n"
    cfg = write_suites(pytester, files)
    result, out = run(pytester, cfg)
    assert result.ret == 1
    s = signoff(out)
    assert s["verdicts"] == {"nodes": "PASS", "network": "PASS", "slurm": "FAIL", "cgroup": "BLOCKED", "mpi": "BLOCKED"}
    slurm = next(a for a in s["areas"] if a["area"] == "slurm")
    assert slurm["failures"] == [{
        "nodeid": "suites/l2_slurm/test_reg.py::test_nodes_registered",
        "outcome": "failed",
        "message": "c2 is not registered (State=DOWN)",
    }]
    cgroup = next(a for a in s["areas"] if a["area"] == "cgroup")
    assert cgroup["blocked_by"] == ["blocked by l2_slurm::test_nodes_registered (L2 Slurm registration failed)"]
    assert "| slurm | L2 Slurm registration | yes | **FAIL** |" in (out / "signoff.md").read_text()
    result.stdout.fnmatch_lines(["*hpcvalidate sign-off: FAIL*", "*L2 slurm*FAIL*c2 is not*", "*L3 cgroup*BLOCKED*"])
    html = (out / "signoff.html").read_text()
    assert "<title>Sign-off: cluster t: FAIL</title>" in html
    assert "<td>slurm</td><td>L2 Slurm registration</td><td>yes</td><td>" in html and ">FAIL</span>" in html
    assert "<td>c2 is not registered (State=DOWN)</td>" in html


def test_the_signoff_is_an_entry_of_the_allure_report(pytester):
    files = dict(PASSING)
    files["suites/l2_slurm/test_reg.py"] = "def test_nodes_registered():\n    assert False, 'c2 is not registered'\n"
    cfg = write_suites(pytester, files)
    _, out = run(pytester, cfg)
    doc = results(out, signoff=True)["Sign-off: cluster t"]
    assert doc["status"] == "failed"
    assert doc["statusDetails"]["message"] == "hpcvalidate sign-off: FAIL (slurm FAIL, cgroup BLOCKED, mpi BLOCKED)"
    assert [(s["name"].split(":")[0], s["status"]) for s in doc["steps"]] == [
        ("nodes", "passed"), ("network", "passed"), ("slurm", "failed"), ("cgroup", "skipped"), ("mpi", "skipped"),
        ("storage", "skipped"),
    ]
    assert doc["steps"][3]["name"] == "cgroup: BLOCKED: blocked by l2_slurm::test_nodes_registered (L2 Slurm registration failed)"
    assert "<td>cgroup</td>" in doc["descriptionHtml"]
    md = next(a for a in doc["attachments"] if a["name"] == "signoff.md")
    assert (out / "allure-results" / md["source"]).read_text() == (out / "signoff.md").read_text()
    assert doc["historyId"] == results(run(pytester, cfg, "again")[1], signoff=True)["Sign-off: cluster t"]["historyId"]


def test_a_subset_selected_with_k_leaves_areas_not_run_and_fails_the_gate(pytester):
    cfg = write_suites(pytester, PASSING)
    result, out = run(pytester, cfg, "out", "-k", "reach or bandwidth")
    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # every test passed, the sign-off did not
    s = signoff(out)
    assert s["verdicts"] == {"nodes": "NOT-RUN", "network": "PASS", "slurm": "NOT-RUN", "cgroup": "NOT-RUN",
                            "mpi": "NOT-RUN"}
    assert s["exit_code"] == 1 and "-k" in s["invocation"]
    result.stdout.fnmatch_lines([
        "*L2 slurm*NOT-RUN*no check of this area ran*",
        "hpcvalidate: not signed off (nodes NOT-RUN, slurm NOT-RUN, cgroup NOT-RUN, mpi NOT-RUN): exit code 1",
    ])


def test_an_area_whose_checks_all_skip_for_a_missing_capability_is_not_run(pytester):
    files = dict(PASSING)
    files["suites/l4_mpi/test_pingpong.py"] = "import pytest\ndef test_pingpong():\n    pytest.skip('requires mpirun: not installed on c1')\n"
    cfg = write_suites(pytester, files)
    result, out = run(pytester, cfg)
    assert result.ret == 1
    mpi = next(a for a in signoff(out)["areas"] if a["area"] == "mpi")
    assert mpi["verdict"] == "NOT-RUN"
    assert mpi["skipped"] == [{"nodeid": "suites/l4_mpi/test_pingpong.py::test_pingpong", "reason": "requires mpirun: not installed on c1"}]


def test_only_the_configured_required_areas_gate(pytester):
    cfg = write_suites(pytester, {k: v for k, v in PASSING.items() if "l1_network" in k})
    cfg.write_text(cfg.read_text() + "signoff: {required: [network]}\n")
    result, out = run(pytester, cfg)
    assert result.ret == 0
    assert signoff(out)["verdicts"] == {"network": "PASS"}


@pytest.mark.parametrize("option", ["--collect-only", "--fixtures"])
def test_runs_that_run_no_tests_write_no_signoff(pytester, option):
    cfg = write_suites(pytester, PASSING)
    result, out = run(pytester, cfg, "out", option, "-q")
    assert result.ret == 0
    assert not (out / "signoff.json").exists() and not (out / "metrics.json").exists()
    assert "sign-off" not in result.stdout.str()


def test_provisioning_time_is_a_run_metric_that_gates_when_the_config_sets_a_maximum(pytester):
    cfg = write_suites(pytester, PASSING)
    cfg.write_text(cfg.read_text() + "thresholds: {provision_s_max: 60}\n")
    pytester.makeconftest(
        """
        from pytest_hpcvalidate.plugin import HPC

        def pytest_sessionstart(session):
            session.config.stash[HPC].provision_seconds = 75.0  # as the cluster fixture records it
            plugin = session.config.pluginmanager.get_plugin("hpcvalidate-report")
            plugin.record_metric("controller_boot_s", 3.0, "s", 10, "<=")
        """
    )
    result, out = run(pytester, cfg)
    result.assert_outcomes(passed=8)
    assert result.ret == 1
    s = signoff(out)
    assert s["verdict"] == "FAIL" and set(s["verdicts"].values()) == {"PASS"}
    assert [(m["name"], m["passed"]) for m in s["run_metrics"]] == [("controller_boot_s", True), ("provision_s", False)]
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert metrics[-1]["message"] == "provision_s = 75 s, above the maximum 60 s" and metrics[-1]["nodeid"] is None
    result.stdout.fnmatch_lines(["*run*FAIL*provision_s = 75 s, above the maximum 60 s*"])


# ----------------------------------------------------------------------------- allure run files
def test_environment_and_categories_are_written_for_allure(pytester):
    cfg = write_suites(pytester, PASSING)
    _, out = run(pytester, cfg)
    props = dict(
        line.split("=", 1) for line in (out / "allure-results" / "environment.properties").read_text().splitlines()
    )
    assert props["provider"] == "local" and props["cluster"] == "t" and props["nodes"] == "3"
    assert props["config_sha256"] == hashlib.sha256(cfg.read_bytes()).hexdigest()
    assert {"python", "pytest", "runner_kernel"} <= set(props)
    categories = json.loads((out / "allure-results" / "categories.json").read_text())
    assert [c["name"] for c in categories] == [
        "Not signed off", "Infrastructure errors", "Product defects", "Blocked by a lower layer", "Not applicable",
    ]


def test_attachments_are_redacted(pytester):
    files = dict(PASSING)
    files["suites/l1_network/test_reach.py"] = """
        from pytest_hpcvalidate.report.attach import attach_text

        def test_with_evidence():
            attach_text(
                "$ cat /etc/slurm/slurmdbd.conf\\nStoragePass=hunter2\\n"
                "-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjE\\n-----END OPENSSH PRIVATE KEY-----\\n",
                "slurmdbd.conf",
            )
    """
    cfg = write_suites(pytester, files)
    _, out = run(pytester, cfg)
    doc = results(out)["test_with_evidence"]
    body = (out / "allure-results" / doc["attachments"][0]["source"]).read_text()
    assert "hunter2" not in body and "b3BlbnNzaC1rZXktdjE" not in body
    assert "StoragePass=[REDACTED]" in body


def test_captured_output_is_redacted_before_allure_attaches_it(pytester):
    files = dict(PASSING)
    files["suites/l1_network/test_reach.py"] = """
        import sys

        def test_prints_secrets():
            print("connecting with password=hunter2")
            sys.stderr.write("-----BEGIN RSA PRIVATE KEY-----\\nMIIEowIBAAKCAQEA\\n-----END RSA PRIVATE KEY-----\\n")
            assert False, "look at the output"
    """
    cfg = write_suites(pytester, files)
    result, out = run(pytester, cfg)
    doc = results(out)["test_prints_secrets"]
    bodies = {a["name"]: (out / "allure-results" / a["source"]).read_text() for a in doc["attachments"]}
    assert set(bodies) == {"stdout", "stderr"}
    assert "password=[REDACTED]" in bodies["stdout"] and "hunter2" not in bodies["stdout"]
    assert "MIIEowIBAAKCAQEA" not in bodies["stderr"]
    # the terminal's "Captured stdout" section too (the traceback's source lines are the test's own)
    result.stdout.fnmatch_lines(["*Captured stdout call*", "connecting with password=[[]REDACTED[]]"])


def test_without_hpc_config_nothing_is_written(pytester):
    pytester.makepyfile(test_x="def test_x(): pass")
    result = pytester.runpytest(*NO_HYPOTHESIS, "--alluredir", "ar")
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "reports").exists()
    assert not (pytester.path / "ar" / "categories.json").exists()
    assert "sign-off" not in result.stdout.str()


# ----------------------------------------------------------------------------- xdist
XDIST_CONFTEST = """
# the dummy suites need no provisioned cluster: keep the xdist controller from provisioning one,
# and give them the config's nodes reached as this machine (real commands)
import pytest
import pytest_hpcvalidate.lifecycle as lifecycle
from pytest_hpcvalidate.cluster import Cluster, Node
from pytest_hpcvalidate.transport.local import LocalTransport
lifecycle.controller_provision = lambda config, model: {}

@pytest.fixture(scope="session")
def cluster():
    return Cluster("t", "local", [Node(n, "compute", "127.0.0.1", LocalTransport(n)) for n in ("ctl", "c1", "c2")])
"""


def test_under_xdist_the_controller_writes_one_signoff_with_every_workers_results(pytester):
    files = dict(PASSING)
    files["suites/l3_cgroup/test_cores.py"] = """
        def test_cores_constrained(metric, cluster):
            cluster.node("c1").run("nproc")
            m = metric("cores_seen", 4, "", 2, "<=", node="c1")
            assert m.passed, m.message
    """
    cfg = write_suites(pytester, files)
    pytester.makeconftest(XDIST_CONFTEST)
    out = pytester.path / "out"
    result = pytester.runpytest_subprocess(
        "-n", "2", "-p", "xdist", "--hpc-config", str(cfg), "--hpc-report-dir", str(out), "suites"
    )
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*hpcvalidate sign-off: FAIL*"])
    assert result.stdout.str().count("hpcvalidate sign-off:") == 1
    s = signoff(out)
    assert s["verdicts"]["network"] == "PASS" and s["verdicts"]["cgroup"] == "FAIL"
    assert s["verdicts"]["slurm"] == "PASS"  # cgroup is above slurm: the gate is per process under xdist
    names = sorted(m["name"] for m in json.loads((out / "metrics.json").read_text())["metrics"])
    assert names == ["bandwidth_gbps", "cores_seen", "ping_rtt_p50_ms", "ping_rtt_p50_ms"]
    docs = results(out)
    assert len(docs) == 8 and all("epic" in label_map(d) for d in docs.values())
    steps = [s["name"] for s in docs["test_cores_constrained"]["steps"]]
    assert steps[0].startswith("c1: `nproc` → exit 0") and steps[1].startswith("metric cores_seen [c1]: 4")
    # the software a worker read from the nodes reaches the controller's fingerprint
    props = (out / "allure-results" / "environment.properties").read_text()
    assert f"kernel={os.uname().release}" in props.splitlines() and "slurm=" in props
    assert s["fingerprint"]["kernel"] == os.uname().release
    assert (out / "allure-results" / "categories.json").exists()
