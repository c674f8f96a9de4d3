"""The report of real runs of the shipped suites on one real local cluster (1 controller +
2 compute nodes), as CI and a reviewer meet it:

- a healthy run signs off (exit 0) and its fingerprint holds what the nodes really run;
- a run with one fault (c1's munge key readable by others) fails that area, blocks the
  layers above, exits non-zero, and the Allure HTML report, opened in headless Chromium,
  shows the failed check, its node, its command evidence and the blocked layers;
- ``--hpc-baseline`` flags a throttled link and passes an unchanged run.

Each run goes against the running cluster (``--hpc-reuse``): the two full runs the module
shares as separate ``pytest`` processes, the baseline's short runs in-process (``pytester``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import allure_browser
import clusterkit
import pytest
import yaml
from reportkit import NO_HYPOTHESIS

from pytest_hpcvalidate.__main__ import main
from pytest_hpcvalidate.faults import network as netfaults
from pytest_hpcvalidate.faults import slurm as slurmfaults

pytestmark = [pytest.mark.integration, clusterkit.needs_local]

BODY = {
    "controller": {"name": "ctl", "cpus": 1, "memory_mb": 512},
    "compute": [{"names": "c[1-2]", "cpus": 2, "memory_mb": 1024}],
    "slurm": {"job_shape_examples": 2, "partitions": [{"name": "all", "nodes": "ALL", "default": True}]},
    # these tests are about the report, not this machine's speed: performance thresholds wide enough
    # that a busy 2-core machine (MPI half round trips of 400 us seen) still passes a healthy run
    "thresholds": {"mpi_latency_us_max": 20000, "mpi_bandwidth_mibps_min": 1, "latency_p50_ms_max": 50,
                   "latency_p99_ms_max": 500, "bandwidth_gbps_min": 0.01},
}
REQUIRED = {"nodes", "network", "slurm", "cgroup", "mpi"}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """(engine, config path) of the module's running cluster."""
    with clusterkit.running_cluster("rp", BODY, tmp_path_factory.mktemp("report-e2e")) as made:
        yield made


def run_suites(config: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    """The shipped suites against the running cluster, in a pytest process of their own."""
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", "-q",
            "--hpc-config", str(config), "--hpc-reuse", "--hpc-report-dir", str(out), *args]
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=out.parent, env=env)


def signoff(out: Path) -> dict:
    return json.loads((out / "signoff.json").read_text())


def allure_results(out: Path) -> dict[str, dict]:
    docs = (json.loads(p.read_text()) for p in (out / "allure-results").glob("*-result.json"))
    return {d["name"]: d for d in docs}


def properties(out: Path) -> dict[str, str]:
    text = (out / "allure-results" / "environment.properties").read_text()
    return dict(line.split("=", 1) for line in text.splitlines())


@pytest.fixture(scope="module")
def healthy(made, tmp_path_factory):
    """(process, report dir) of a run of every suite on the healthy cluster."""
    _, config = made
    out = tmp_path_factory.mktemp("healthy") / "report"
    return run_suites(config, out), out


@pytest.fixture(scope="module")
def faulty(made, tmp_path_factory):
    """(process, report dir) of a run of every suite while c1's munge key is mode 0644."""
    engine, config = made
    out = tmp_path_factory.mktemp("faulty") / "report"
    with slurmfaults.munge_key_mode(engine, "c1", 0o644):
        return run_suites(config, out), out


def _version_here(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True).stdout


def key_mode_evidence(out: Path) -> tuple[dict, str]:
    """The step of c1's munge key check that read the key's mode, and its attached stdout."""
    doc = allure_results(out)["test_munge_key_is_private_to_munged[c1]"]
    step = next(st for st in doc["steps"] if "munge.key" in st["name"] and "stat" in st["name"])
    stdout = next(a for a in step["attachments"] if a["name"] == "stdout")
    return step, (out / "allure-results" / stdout["source"]).read_text()


def test_healthy_run_signs_off_and_fingerprints_what_the_nodes_run(made, healthy):
    _, config = made
    proc, out = healthy
    assert proc.returncode == 0, proc.stdout[-3000:]
    s = signoff(out)
    assert s["verdict"] == "PASS" and {a: s["verdicts"][a] for a in REQUIRED} == dict.fromkeys(REQUIRED, "PASS")
    props = properties(out)
    # the nodes run this machine's binaries and kernel (namespaces, not VMs)
    assert props["provider"] == "local" and props["nodes"] == "3" and props["compute_nodes"] == "2"
    assert props["slurm"] in _version_here("slurmd", "-V")
    assert props["munge"] in _version_here("munged", "--version")
    assert props["openmpi"] in _version_here("ompi_info", "--version")
    assert props["pmix"] and props["pmix"][0].isdigit()
    assert props["kernel"] == os.uname().release
    assert props["config_sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    assert "gpu_model" not in props  # no GPU here: nothing invented
    assert "anchor_pid" not in props  # per-node identities are not cluster facts
    assert s["fingerprint"]["slurm"] == props["slurm"]
    # evidence of a passing check: its commands as steps, outputs not attached
    doc = allure_results(out)["test_munge_key_is_private_to_munged[c1]"]
    stat = next(st for st in doc["steps"] if "munge.key" in st["name"] and "stat" in st["name"])
    assert stat["name"].startswith("c1: `stat ") and "→ exit 0 in" in stat["name"]
    assert {p["name"] for p in stat["parameters"]} == {"node", "command", "exit code", "duration"}
    assert stat.get("attachments", []) == []


def test_fault_fails_its_area_blocks_the_layers_above_and_exits_non_zero(faulty):
    proc, out = faulty
    assert proc.returncode == 1, proc.stdout[-3000:]
    s = signoff(out)
    assert s["verdicts"] == {"nodes": "PASS", "network": "PASS", "slurm": "FAIL", "cgroup": "BLOCKED", "mpi": "BLOCKED"}
    slurm = next(a for a in s["areas"] if a["area"] == "slurm")
    assert [f["nodeid"].split("::")[-1] for f in slurm["failures"]] == ["test_munge_key_is_private_to_munged[c1]"]
    md = (out / "signoff.md").read_text()
    assert "| slurm | L2 Slurm registration | yes | **FAIL** |" in md
    assert "| network | L1 Nodes, networking and PCIe | yes | **PASS** |" in md
    assert "| cgroup | L3 GRES and cgroup isolation | yes | **BLOCKED** |" in md
    assert "hpcvalidate: not signed off (slurm FAIL, cgroup BLOCKED, mpi BLOCKED): exit code 1" in proc.stdout
    # the failed check's evidence: the command that read the key's mode, with its output
    doc = allure_results(out)["test_munge_key_is_private_to_munged[c1]"]
    assert doc["status"] == "failed" and "0644" in doc["statusDetails"]["message"]
    step, stdout = key_mode_evidence(out)
    assert step["name"].startswith("c1: `stat ") and stdout.startswith("644 ")


def test_html_report_shows_the_failure_its_node_evidence_and_the_blocked_layers(faulty, capsys):
    reason = allure_browser.missing()
    if reason:
        pytest.skip(f"needs Allure's generator, Java and Chromium (bash setup.sh installs them): {reason}")
    _, out = faulty
    assert main(["report", str(out)]) == 0  # python -m pytest_hpcvalidate report DIR
    index = out / "html" / "index.html"
    assert f"Allure report: {index}" in capsys.readouterr().out
    failed = allure_browser.result_uid(index, "test_munge_key_is_private_to_munged[c1]")
    stat_stdout = next(a["uid"] for step, a in allure_browser.step_attachments(index, failed)
                       if step.startswith("c1: `stat") and a["name"] == "stdout")
    sign = allure_browser.result_uid(index, f"Sign-off: cluster {signoff(out)['cluster']}")
    overview, check, verdicts = allure_browser.render(
        index, "", f"testresult/{failed}?attachment={stat_stdout}", f"testresult/{sign}")
    # the overview lists the ten largest suites (l4_mpi is not among them); the layers, blocked ones too
    for suite in ("l1_network", "l2_slurm", "l3_cgroup", "sign-off"):
        assert suite in overview
    for layer in ("L1 Nodes, networking and PCIe", "L2 Slurm registration", "L3 GRES and cgroup isolation",
                  "L4 MPI and containers"):
        assert layer in overview
    assert "Blocked by a lower layer" in overview and "Product defects" in overview
    assert "Not signed off" in overview
    assert "slurm=22" not in overview  # the environment shows facts as a table, not raw properties
    # the failed check: its name, node, message and command evidence, its output attachment opened
    assert "test_munge_key_is_private_to_munged[c1]" in check and "Failed" in check
    assert "Tags: local c1" in check and "Categories: Product defects" in check
    assert "mode 0644, must be 0400 or 0600" in check
    assert "c1: `stat -c" in check and "munge.key` → exit 0 in" in check
    _, stat_output = key_mode_evidence(out)
    assert check.endswith(f"stdout {stat_output.strip()}")  # the attachment opened: the key's mode, owner, size
    # the sign-off entry: the verdict per area
    assert "slurm: FAIL" in verdicts and "network: PASS" in verdicts
    assert "cgroup: BLOCKED" in verdicts and "mpi: BLOCKED" in verdicts
    assert "blocked by l2_slurm::test_munge_key_is_private_to_munged[c1]" in verdicts


def test_baseline_flags_a_throttled_link_and_passes_an_unchanged_run(made, healthy, pytester):
    engine, config = made
    _, before = healthy
    tmp_path = pytester.path
    doc = yaml.safe_load(config.read_text())
    doc["signoff"] = {"required": ["network"]}
    # a wide tolerance: bandwidth over veths moves with the machine's load (an unchanged run must not
    # flake), while the throttle below cuts ~99.7% (the minimum of 0.01 Gbit/s still passes: only the baseline fails)
    doc["thresholds"]["regression_tolerance_pct"] = 95
    lenient = tmp_path / "bandwidth.yaml"
    lenient.write_text(yaml.safe_dump(doc))

    def run_bandwidth(out: str):  # in this process (pytester): the pair c1->c2 only
        return pytester.runpytest(*NO_HYPOTHESIS, "--hpc-config", str(lenient), "--hpc-reuse", "--hpc-report-dir", out,
                                  "-k", "bandwidth and c1-", "--hpc-baseline", str(before / "metrics.json"))

    unchanged, out = run_bandwidth("unchanged"), tmp_path / "unchanged"
    assert unchanged.ret == 0, unchanged.stdout.str()[-3000:]
    compared = [m for m in json.loads((out / "metrics.json").read_text())["metrics"] if m["baseline"] is not None]
    assert [m["node"] for m in compared] == ["c1->c2"] and not compared[0]["regressed"]

    with netfaults.rate_limited(engine, "c1", 50):
        throttled = run_bandwidth("throttled")
    assert throttled.ret == 1, throttled.stdout.str()[-3000:]
    metrics = {m["node"]: m for m in json.loads((tmp_path / "throttled" / "metrics.json").read_text())["metrics"]}
    slow = metrics["c1->c2"]
    assert slow["regressed"] and not slow["passed"] and slow["change_pct"] < -95
    base = next(m for m in json.loads((before / "metrics.json").read_text())["metrics"] if m["node"] == "c1->c2")
    assert slow["baseline"] == base["value"]
    assert slow["message"].startswith(f"tcp_bandwidth_gbps on c1->c2 = {slow['value']:.6g} Gbit/s, regressed from "
                                      f"{base['value']:.6g} Gbit/s in the baseline (")
    assert "tolerance 95%, higher is better)" in slow["message"]
    throttled.stdout.fnmatch_lines(["E * c1 -> c2: tcp_bandwidth_gbps on c1->c2 = * Gbit/s, regressed from * Gbit/s "
                                    "in the baseline (*; tolerance 95%, higher is better)"])
