"""The shipped GPU suites themselves:

- the layer-1 test functions go red on each degraded H100 recording with the judgement's
  message (the suite asserts :mod:`probes.gpu_health`, nothing of its own);
- on a cluster whose GPUs are simulated, every GPU check is not applicable (skipped with the
  capability's reason, also under ``--hpc-strict``), and nothing is provisioned for them;
- through the plugin on a real local cluster that *declares* real GPUs this machine does not
  have: the PCI check fails naming the node, NVML checks skip naming it (``--hpc-strict``
  fails them), a GPU step sees no GPU while Slurm says it has one, a step without GRES passes,
  and PyTorch reports why it cannot reach CUDA — what a GPU node with a missing driver shows.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import clusterkit
import pytest
import yaml
from degrade import NODE, nvml_text
from test_gpu_health import DEGRADED, expectation

from pytest_hpcvalidate.cluster import Node
from pytest_hpcvalidate.probes import gpu
from pytest_hpcvalidate.transport.local import LocalTransport

SUITES = Path(__file__).resolve().parents[2] / "suites"
GPU_SUITES = ["l1_pcie/test_gpu_health.py", "l3_gres/test_real_gpu.py", "l4_gpu/test_torch_cuda.py"]


def suite_module(relative: str):
    spec = importlib.util.spec_from_file_location(f"suite_{Path(relative).stem}", SUITES / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: judgement -> the layer-1 suite test that asserts it
L1_TEST_OF = {
    "count_and_model": "test_nvml_sees_configured_gpus",
    "pcie_link": "test_pcie_link_at_expected_generation_and_width",
    "driver": "test_driver_at_least_minimum",
    "ecc": "test_ecc_as_required_without_uncorrected_errors",
    "memory_repair": "test_no_pending_page_retirement_or_row_remap",
    "persistence": "test_persistence_mode_as_configured",
    "slowdown": "test_no_hardware_slowdown",
}


@pytest.mark.parametrize("fault", list(DEGRADED))
def test_layer1_suite_goes_red_on_each_degraded_recording(fault):
    l1 = suite_module("l1_pcie/test_gpu_health.py")
    check, json_changes, _, says = DEGRADED[fault]
    node = Node(NODE, "compute", "127.0.0.1", LocalTransport(NODE))
    top = {"driver": "470.82.01"} if fault == "old driver" else None
    facts = {NODE: gpu.parse_nvml_json(NODE, nvml_text(json_changes, top))}
    extra = {"metric": lambda *a, **k: None} if check == "slowdown" else {}
    with pytest.raises(AssertionError) as failed:
        getattr(l1, L1_TEST_OF[check])(gpu_node=node, expectation=expectation(), gpu_facts=facts, **extra)
    assert all(fragment in str(failed.value) for fragment in says), str(failed.value)
    healthy = {NODE: gpu.parse_nvml_json(NODE, nvml_text())}
    getattr(l1, L1_TEST_OF[check])(gpu_node=node, expectation=expectation(), gpu_facts=healthy, **extra)


SIM_CONFIG = """
name: simgpu
provider: local
network: {subnet: 10.234.250.0/24, bridge: hpcv-simgpu}
compute:
  - names: g1
    gpus: {count: 2, type: sim}
slurm: {gres_types: [gpu]}
"""


def test_simulated_gpus_make_every_gpu_check_not_applicable(pytester):
    """Skipped before any fixture runs: no cluster is provisioned for them."""
    cfg = pytester.makefile(".yaml", cluster=SIM_CONFIG)
    for strict in ([], ["--hpc-strict"]):
        result = pytester.runpytest("--hpc-config", str(cfg), "-rs", *strict, *(str(SUITES / s) for s in GPU_SUITES))
        result.assert_outcomes(skipped=19)
        result.stdout.fnmatch_lines(["*requires nvml: the config declares no real GPUs (none, or only simulated ones)*"])


# ----------------------------------------------------------------------------- on a real local cluster
BODY = {
    "controller": {"name": "ctl", "cpus": 1, "memory_mb": 512},
    "compute": [{"names": "g1", "cpus": 2, "memory_mb": 1024, "gpus": {"count": 2, "type": "sim"}}],
    "slurm": {"gres_types": ["gpu"], "partitions": [{"name": "all", "nodes": "ALL", "default": True}]},
}
H100 = {"count": 2, "type": "h100", "model": "NVIDIA H100 80GB HBM3", "simulated": False}


@pytest.fixture(scope="module")
def declared_h100(tmp_path_factory):
    """A running cluster (simulated device files), and a config for it that declares real H100s."""
    directory = tmp_path_factory.mktemp("gpu")
    with clusterkit.running_cluster("g", BODY, directory) as (_, path):
        doc = yaml.safe_load(path.read_text())
        doc["compute"][0]["gpus"] = H100
        declared = directory / "declared.yaml"
        declared.write_text(yaml.safe_dump(doc))
        yield declared


def run_suite(pytester, config: Path, suite: str, *extra: str) -> dict[str, tuple[str, str]]:
    """{test id: (outcome, message)} of one shipped suite file run against the running cluster."""
    result = pytester.runpytest("--hpc-config", str(config), "--hpc-reuse", "-p", "no:cacheprovider",
                                "--hpc-report-dir", str(pytester.path / "reports"), *extra, str(SUITES / suite))
    out = {}
    for rep in result.reprec.getreports("pytest_runtest_logreport"):
        if rep.when == "call" or rep.outcome != "passed":
            if rep.skipped:
                message = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
            else:  # the assertion's message, not the source around it
                crash = getattr(rep.longrepr, "reprcrash", None)
                message = crash.message if crash else rep.longreprtext
            out[rep.nodeid.split("::", 1)[1]] = (rep.outcome, message)
    return out


@pytest.mark.integration
@clusterkit.needs_local
def test_layer1_on_a_node_without_the_declared_gpus(declared_h100, pytester):
    results = run_suite(pytester, declared_h100, "l1_pcie/test_gpu_health.py")
    outcome, message = results.pop("test_gpus_on_pci_bus_bound_to_driver[g1]")
    assert outcome == "failed" and "g1: 0 NVIDIA GPUs on the PCI bus, the config says 2 (found: none)" in message
    assert len(results) == 7 and {outcome for outcome, _ in results.values()} == {"skipped"}
    assert all("g1: neither NVML nor nvidia-smi answered on the node" in m for _, m in results.values()), results
    strict = run_suite(pytester, declared_h100, "l1_pcie/test_gpu_health.py", "--hpc-strict")
    assert len(strict) == 8 and {outcome for outcome, _ in strict.values()} == {"failed"}


@pytest.mark.integration
@clusterkit.needs_local
def test_layer3_steps_on_a_node_without_the_declared_gpus(declared_h100, pytester):
    results = run_suite(pytester, declared_h100, "l3_gres/test_real_gpu.py")
    assert results["test_step_without_gres_sees_no_gpu[g1]"] == ("passed", "")
    outcome, message = results["test_gres_step_sees_exactly_its_gpus[g1]"]
    assert outcome == "failed"
    for n in (1, 2):
        assert f"g1: a step with --gres=gpu:{n}: neither NVML nor nvidia-smi sees a GPU (NVML: ERR " in message
        assert f"g1: a step with --gres=gpu:{n}: CUDA gives no device count (error: " in message
    assert "CUDA_VISIBLE_DEVICES" not in message, "Slurm gave each step its GPUs"
    outcome, message = results["test_concurrent_single_gpu_steps_get_different_gpus[g1]"]
    assert outcome == "failed" and "neither NVML nor nvidia-smi sees a GPU" in message
    assert "one after the other" not in message and "both see" not in message
    outcome, message = results["test_gres_files_are_the_nodes_real_gpus[g1]"]
    assert outcome == "skipped" and "g1: neither NVML nor nvidia-smi answered" in message


@pytest.mark.integration
@clusterkit.needs_local
def test_layer4_torch_through_slurm_on_a_node_without_torch(declared_h100, pytester):
    results = run_suite(pytester, declared_h100, "l4_gpu/test_torch_cuda.py")
    outcome, message = results.pop("test_torch_reaches_cuda_on_every_gpu[g1]")
    assert outcome == "failed"
    assert "g1: g1 rank 0: import torch: ModuleNotFoundError" in message and "g1 rank 1: import torch" in message
    outcome, message = results.pop("test_nccl_allreduce_across_gpu_nodes")
    assert outcome == "skipped" and "fewer than two nodes with real GPUs" in message
    assert len(results) == 5 and all(o == "skipped" and "g1: no task reached CUDA" in m for o, m in results.values())
