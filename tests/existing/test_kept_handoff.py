"""``--hpc-keep`` hands a cluster to the existing provider: the same verdicts as the local run.

A real plugin run of the local provider keeps its cluster up and writes
``reports/kept-cluster.yaml``; a second, separate pytest process runs the same suites
against that file through ``provider: existing`` (over SSH, nothing provisioned, nothing
changed). Every test must end the same way in both runs: passed, skipped, or failed. The
config promises an MPI bandwidth no link here has, so the comparison includes a real failure,
not only passes. ``python -m pytest_hpcvalidate destroy``
then removes the kept cluster, leaving nothing.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import clusterkit
import pytest
import yaml
from existingkit import RELAXED_THRESHOLDS

from pytest_hpcvalidate.providers.local.cleanup import leftovers

ROOT = Path(__file__).resolve().parents[2]
SUITES = [str(ROOT / "suites" / s) for s in ("l1_network", "l2_slurm", "l3_gres", "l3_cgroup", "l4_mpi")]
pytestmark = [pytest.mark.integration, clusterkit.needs_local]

BODY = {
    "controller": {"name": "ctl", "cpus": 1, "memory_mb": 512},
    "compute": [{"names": "g[1-2]", "cpus": 2, "memory_mb": 1024, "gpus": {"count": 2, "type": "sim"}}],
    "slurm": {"gres_types": ["gpu"], "partitions": [{"name": "all", "nodes": "ALL", "default": True}]},
    # 10 TiB/s: no MPI link has it, so the top layer's bandwidth check fails in both runs (a
    # failure in a lower layer would block everything above it and leave little to compare)
    "thresholds": {**RELAXED_THRESHOLDS, "mpi_bandwidth_mibps_min": 10485760.0},
}


def run_plugin(config: Path, reports: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict[str, tuple[str, str]]]:
    """A separate ``pytest`` process over the suites; (process, {test id: (verdict, detail)})
    read from its JUnit XML (detail: the failure's first line or the skip reason)."""
    junit = reports.with_suffix(".xml")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--hpc-config", str(config), "--hpc-report-dir", str(reports),
         "-p", "no:cacheprovider", "-p", "no:randomly", "--junitxml", str(junit), "-q", *args, *SUITES],
        cwd=reports.parent, capture_output=True, text=True, timeout=900,
    )
    verdicts = {}
    if junit.exists():
        for case in ET.parse(junit).iter("testcase"):
            test_id = f"{case.get('classname')}::{case.get('name')}"
            outcome = next(((el.tag, (el.get("message") or "").splitlines()[0] if el.get("message") else "")
                            for el in case if el.tag in ("failure", "error", "skipped")), ("passed", ""))
            verdicts[test_id] = outcome
    return proc, verdicts


def test_kept_cluster_gives_the_existing_provider_the_same_verdicts(tmp_path):
    name, text = clusterkit.config_yaml("kh", BODY)
    config = tmp_path / "cluster.yaml"
    config.write_text(text)
    try:
        local, local_verdicts = run_plugin(config, tmp_path / "local", "--hpc-keep")
        out = local.stdout[-4000:] + local.stderr[-2000:]
        kept = tmp_path / "local" / "kept-cluster.yaml"
        assert kept.is_file(), out
        assert "cluster left running (--hpc-keep)" in local.stdout, out
        handoff = yaml.safe_load(kept.read_text())
        assert handoff["provider"] == "existing" and handoff["ssh"]["host_key_policy"] == "strict", handoff
        assert leftovers(name), "--hpc-keep took the cluster down"

        existing, existing_verdicts = run_plugin(kept, tmp_path / "existing")
        out += existing.stdout[-4000:] + existing.stderr[-2000:]

        failed = {t: d for t, (v, d) in local_verdicts.items() if v == "failure"}
        assert failed and all("l4_mpi" in t and "bandwidth" in t for t in failed), out  # only the impossible promise
        assert all("MiB/s" in d for d in failed.values()), failed
        assert not any(v == "error" for v, _ in local_verdicts.values()), out
        passed = [t for t, (v, _) in local_verdicts.items() if v == "passed"]
        assert len(passed) >= 40, out
        assert {t: v for t, (v, _) in existing_verdicts.items()} == {t: v for t, (v, _) in local_verdicts.items()}, out
        assert local.returncode == existing.returncode == 1, out  # the MPI bandwidth failure, nothing else
    finally:
        destroy = subprocess.run([sys.executable, "-m", "pytest_hpcvalidate", "destroy", name],
                                 capture_output=True, text=True, timeout=120)
        left = leftovers(name)
        clusterkit.remove(name)
    assert destroy.returncode == 0 and f"destroyed cluster {name!r}" in destroy.stdout, destroy.stdout + destroy.stderr
    assert left == [], f"destroy {name} left {left}"
    again = subprocess.run([sys.executable, "-m", "pytest_hpcvalidate", "destroy", name],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and again.stderr.count("\n") == 1, again.stderr
    assert f"no cluster named {name!r} is recorded on this machine" in again.stderr
