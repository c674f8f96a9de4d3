"""The shipped configs, end to end through the plugin: ``pytest --hpc-config configs/X.yaml``
provisions the cluster, jobs run on it (srun on every node, a GRES step, an MPI program
compiled at run time over PMIx), and afterwards nothing of the cluster is left."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import clusterkit
import pytest

from pytest_hpcvalidate.config import load_config
from pytest_hpcvalidate.providers.local.cleanup import leftovers

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, clusterkit.needs_local]

CHECKS = {
    "minimal": ["l2_slurm/test_registration.py::test_a_job_step_runs_on_every_node_of_each_partition",
                "l4_mpi/test_mpi.py::test_mpi_ranks_span_every_compute_node"],
    "gpu-sim": ["l2_slurm/test_registration.py::test_a_job_step_runs_on_every_node_of_each_partition",
                "l3_gres/test_gres.py::test_gres_request_gets_exactly_n_gpus",
                "l4_mpi/test_mpi.py::test_mpi_ranks_span_every_compute_node"],
}


@pytest.mark.parametrize("config", sorted(CHECKS))
def test_shipped_config_provisions_runs_jobs_and_leaves_nothing(config, tmp_path):
    path = ROOT / "configs" / f"{config}.yaml"
    name = load_config(str(path)).name
    if (clusterkit.STATE_ROOT / name).exists():
        pytest.skip(f"a cluster named {name!r} already runs here (kept by a developer?)")
    selection = [str(ROOT / "suites" / c) for c in CHECKS[config]]

    def run() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "--hpc-config", str(path), "-p", "no:cacheprovider", "-v",
             "--hpc-report-dir", str(tmp_path / "reports"), *selection],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )

    proc = run()
    if proc.returncode == 1 and clusterkit.only_mpi_ranks_crashed(proc.stdout):
        print(f"an MPI rank segfaulted while starting ({clusterkit.RANK_SEGFAULT}); running {config} once more",
              file=sys.stderr)
        assert leftovers(name) == [], f"the run left {leftovers(name)}"
        proc = run()
    try:
        assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-2000:]
        passed = proc.stdout.count(" PASSED")
        assert " FAILED" not in proc.stdout and " ERROR" not in proc.stdout, proc.stdout[-3000:]
        assert passed >= len(CHECKS[config]), proc.stdout[-3000:]
        assert f"provisioned '{name}'" in proc.stdout
        assert leftovers(name) == [], f"the run left {leftovers(name)}"
    finally:
        clusterkit.remove(name)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_interrupting_a_run_mid_suite_leaves_nothing(sig, tmp_path):
    """Ctrl-C (or a CI runner's SIGTERM) while the suites run: pytest stops, the session
    fixture's teardown removes the cluster, nothing is left."""
    import signal
    import time

    import yaml

    name, text = clusterkit.config_yaml("i", yaml.safe_load((ROOT / "configs" / "minimal.yaml").read_text()))
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--hpc-config", str(path), "-p", "no:cacheprovider", "-v",
         "--hpc-report-dir", str(tmp_path / "reports")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        seen = ""
        deadline = time.monotonic() + 120
        while "PASSED" not in seen and proc.poll() is None and time.monotonic() < deadline:
            seen += proc.stdout.readline()
        assert "PASSED" in seen, f"the run did not get to its first check: {seen[-2000:]}"
        assert leftovers(name) != [], "the cluster should be up while the suites run"
        proc.send_signal(getattr(signal, sig))
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode != 0
        assert leftovers(name) == [], f"after {sig} the run left {leftovers(name)}:\n{(seen + out)[-2000:]}"
    finally:
        if proc.poll() is None:
            proc.kill()
        clusterkit.remove(name)
