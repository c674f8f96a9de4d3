"""The seed project's own cluster YAML (configs/examples/seed-multi-gpu.yaml, read as is)
provisions real VMs: its two virtio-fs shares are mounted, Slurm registers every node, and
its PCIe passthrough devices, which this host cannot pass through (no IOMMU, no such
devices), are reported skipped with that reason on both sides (host and guest) instead of
failing or being silently dropped. Nothing of the cluster is left afterwards."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import libvirtkit
import pytest

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "configs" / "examples" / "seed-multi-gpu.yaml"
NAME = "hpc-cluster"  # the seed file's clusters.hpc.name
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(libvirtkit.skip_reason() is not None, reason=libvirtkit.skip_reason() or "")]

SHARE_CHECK = '''
def test_seed_shares_are_mounted(cluster):
    out = cluster.controller.run("cat /proc/mounts", timeout=20).check().stdout
    mounted = {(f.split()[0], f.split()[1]) for f in out.splitlines() if " virtiofs " in f}
    assert ("project-repo", "{project}") in mounted and ("datasets", "/mnt/datasets") in mounted, out
'''


def test_seed_config_provisions_and_reports_passthrough_as_not_possible_here(tmp_path):
    from pytest_hpcvalidate.providers.libvirt.cleanup import cleanup_stale, leftovers

    project, datasets = tmp_path / "project", tmp_path / "datasets"
    env = {**os.environ, "TOT": str(project), "DATASETS": str(datasets)}  # the seed's ${TOT:-...} paths
    check = tmp_path / "test_seed_shares.py"
    check.write_text(SHARE_CHECK.replace("{project}", str(project)))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "--hpc-config", str(SEED), "-p", "no:cacheprovider", "-p", "no:randomly",
             "-rs", "-v", "--hpc-report-dir", str(tmp_path / "reports"),
             str(ROOT / "suites" / "l1_pcie"), str(ROOT / "suites" / "l2_slurm"), str(check)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
        )
        left = leftovers(NAME)
    finally:
        cleanup_stale(cluster=NAME)
    out = proc.stdout
    tail = out[-5000:] + proc.stderr[-2000:]
    assert f"provisioned '{NAME}'" in out, tail
    assert " FAILED" not in out and " ERROR" not in out, tail
    assert "test_seed_shares_are_mounted PASSED" in out, tail
    assert re.search(r"^L2 slurm\s+PASS", out, re.M), tail
    host_side = [line for line in out.splitlines() if line.startswith("SKIPPED") and "test_host_passthrough" in line]
    assert host_side and all("cannot pass devices through" in line for line in host_side), tail
    for node, devices in (("compute-01", "0000:01:00.0, 0000:01:00.1"), ("compute-02", "0000:07:00.0, 0000:07:00.1")):
        guest = f"{node}: its GPUs were not passed through to the VM: PCIe passthrough of {devices} left out: IOMMU is off"
        assert guest in out, tail
    assert not [line for line in out.splitlines() if "test_gpu_health.py" in line and "PASSED" in line], tail
    assert left == [], f"after the run: {left}"
