"""On a machine with a real NVIDIA GPU (the lent GPU machine; skipped everywhere else): a local
cluster gets the host's /dev/nvidia0, the shipped GPU checks pass on it through the plugin, and
two faults on the real hardware are caught:

- gres.conf declares one GPU more than the node has → the gres.conf checks fail naming the node;
- device constraint switched off (cgroup.conf ``ConstrainDevices=no``) → a step without GRES
  reaches the GPU (NVML/CUDA see it) and the no-GRES check fails naming the node.

The node's GPU model is the one the host has (read with nvidia-smi), and the node's Python is
the one running these tests (``gpus.python``: on the GPU machine torch and pynvml live in
/opt/torch/.venv, not in sshd's PATH). ``bench/gpu_device_run.sh run`` runs this module there.
"""

from __future__ import annotations

import json
import sys

import clusterkit
import pytest

from pytest_hpcvalidate.config import gpu_models
from pytest_hpcvalidate.providers.local import preflight



def host_gpu_model() -> str | None:
    """The name nvidia-smi gives the host's first GPU, or None without a usable GPU."""
    if not (preflight.host_dev() / "nvidia0").exists():
        return None
    return preflight.host_gpu_name(0)[0]


MODEL = host_gpu_model()
pytestmark = [pytest.mark.integration, clusterkit.needs_local,
              pytest.mark.skipif(MODEL is None, reason="needs a real NVIDIA GPU (/dev/nvidia0 and nvidia-smi)")]


BODY = {
    "controller": {"name": "ctl", "cpus": 1, "memory_mb": 1024},
    "compute": [
        {"names": "gpu1", "cpus": 4, "memory_mb": 16384,
         "gpus": {"count": 1, "type": gpu_models.gres_type(MODEL or "x"), "model": MODEL, "host_devices": [0],
                  "python": sys.executable}},
        {"names": "cpu1", "cpus": 2, "memory_mb": 2048},
    ],
    "slurm": {"gres_types": ["gpu"], "job_shape_examples": 3,
              "partitions": [{"name": "all", "nodes": "ALL", "default": True}]},
}
#: what a real GPU must pass: the health, GRES and isolation checks, and PyTorch through Slurm
GPU_CHECKS = ("l1_pcie/test_gpu_health.py", "l3_gres", "l3_cgroup/test_isolation.py", "l4_gpu")


gpu_cluster = clusterkit.module_cluster("rg", BODY, "gpu_cluster")


def test_healthy_real_gpu_passes_every_gpu_check(gpu_cluster, pytester):
    _, path = gpu_cluster
    results = clusterkit.run_checks(pytester, path, *GPU_CHECKS)
    assert clusterkit.failures(results) == {}
    passed = {k for k, (outcome, _) in results.items() if outcome == "passed"}
    # the real-GPU checks ran (a skip here would be a check that proved nothing)
    for check in ("test_nvml_sees_configured_gpus[gpu1]", "test_pcie_link_at_expected_generation_and_width[gpu1]",
                  "test_gres_files_are_the_nodes_real_gpus[gpu1]", "test_step_without_gres_sees_no_gpu[gpu1]",
                  "test_gres_step_sees_exactly_its_gpus[gpu1]", "test_torch_reaches_cuda_on_every_gpu[gpu1]",
                  "test_matmul_throughput[gpu1]", "test_host_device_copy_bandwidth[gpu1]"):
        assert check in passed, f"{check} did not pass: {results.get(check)}"
    metrics = pytester.path / "reports" / "metrics.json"
    assert metrics.is_file() and json.loads(metrics.read_text()), "no metric was recorded"


def test_gres_conf_with_a_gpu_too_many_fails_naming_the_node(gpu_cluster, pytester):
    from pytest_hpcvalidate.faults import slurm as slurmfaults

    engine, path = gpu_cluster
    with slurmfaults.gres_conf_extra_gpu(engine, "gpu1"):
        results = clusterkit.run_checks(pytester, path,
                                        "l3_gres/test_gres.py::test_gres_conf_matches_devices_and_config",
                                        "l3_gres/test_real_gpu.py::test_gres_files_are_the_nodes_real_gpus")
    failed = clusterkit.failures(results)
    assert set(failed) == {"test_gres_conf_matches_devices_and_config[gpu1]",
                           "test_gres_files_are_the_nodes_real_gpus[gpu1]"}
    assert all("gpu1" in message for message in failed.values())


def test_device_constraint_off_lets_a_step_without_gres_reach_the_gpu(gpu_cluster, pytester):
    from pytest_hpcvalidate.faults import slurm as slurmfaults

    engine, path = gpu_cluster
    with slurmfaults.cgroup_setting(engine, "ConstrainDevices", "no"):
        results = clusterkit.run_checks(pytester, path,
                                        "l3_gres/test_real_gpu.py::test_step_without_gres_sees_no_gpu",
                                        "l3_cgroup/test_isolation.py::test_job_without_gres_cannot_open_any_gpu")
    failed = clusterkit.failures(results)
    assert set(failed) == {"test_step_without_gres_sees_no_gpu[gpu1]", "test_job_without_gres_cannot_open_any_gpu[gpu1]"}
    message = failed["test_step_without_gres_sees_no_gpu[gpu1]"]
    assert "gpu1: a step without GRES" in message and "expected 0" in message
