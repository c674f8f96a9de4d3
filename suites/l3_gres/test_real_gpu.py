"""Layer 3, GRES on real GPUs: gres.conf names the node's real GPU device files, and inside a
job step NVML, the CUDA driver and ``CUDA_VISIBLE_DEVICES`` all see exactly the GPUs Slurm
gave it: N for ``--gres=gpu:N``, none without GRES, different ones for concurrent steps.

The step runs the same NVML probe as layer 1 (:func:`probes.gpu.facts_command` with
``in_job=True``); the judgement is :mod:`pytest_hpcvalidate.probes.gpu_health`.
"""

from __future__ import annotations

import pytest

from pytest_hpcvalidate.probes import gpu, gpu_health, slurm
from pytest_hpcvalidate.capabilities import not_applicable

#: sign-off area "gpu" (declared only where the config has real GPUs), in layer 3: with simulated
#: GPUs these checks are not applicable, while the GRES area (test_gres.py) still is
pytestmark = [pytest.mark.layer(3), pytest.mark.area("gpu"), pytest.mark.requires("nvml")]


@pytest.fixture
def real_gpus(gpu_node, node_spec) -> int:
    """The node's configured GPU count; not applicable to simulated GPUs."""
    spec = node_spec[gpu_node.name]
    if spec.gpu_simulated:
        not_applicable(f"{gpu_node.name}: its GPUs are simulated: NVML and CUDA inside jobs do not apply "
                    "(test_gres.py checks their scheduling)")
    return spec.gpus


@pytest.fixture
def python(gpu_node, node_spec) -> str:
    """The node's Python with pynvml (``gpus.python``), in its jobs too."""
    return node_spec[gpu_node.name].gpu_python


def _step_facts(controller, where: str, gres: str, timeout: float, python: str) -> tuple[gpu.NodeGpuFacts, str]:
    r = slurm.srun(controller, f"{where} -n1 {gres}".strip(), gpu.facts_command(in_job=True, python=python),
                   timeout=timeout)
    return gpu.parse_facts(r.node, r.stdout, r.stderr), ("" if r.ok else r.describe())


def test_gres_files_are_the_nodes_real_gpus(gpu_node, real_gpus, gpu_device_files, python):
    facts = gpu.node_facts(gpu_node, python=python)
    if not facts.available:
        pytest.skip(f"{gpu_node.name}: neither NVML nor nvidia-smi answered on the node ({facts.error})")
    files = gpu_device_files
    numbers = gpu.parse_device_numbers(gpu_node.run(gpu.device_numbers_command(files), timeout=20).stdout)
    problems = gpu_health.gres_file_problems(gpu_node.name, files, numbers, facts)
    assert not problems, "; ".join(problems)


def _real(node_spec, name: str) -> int:
    spec = node_spec[name]
    return 0 if spec.gpu_simulated else spec.gpus


def test_gres_step_sees_exactly_its_gpus(gpu_node, real_gpus, controller, place_on, node_spec, thresholds, each_node):
    """For every N up to the node's count: NVML, CUDA and CUDA_VISIBLE_DEVICES show N GPUs
    (every real-GPU node's steps at once)."""
    def probe(node):
        problems = []
        for n in range(1, _real(node_spec, node.name) + 1):
            facts, failed = _step_facts(controller, place_on(node), f"--gres=gpu:{n}", thresholds.job_start_s_max,
                                        node_spec[node.name].gpu_python)
            problems += [failed] if failed else gpu_health.job_visibility_problems(node.name, n, facts)
        return problems

    problems = each_node(probe)
    assert not problems, "; ".join(problems)


def test_step_without_gres_sees_no_gpu(gpu_node, real_gpus, controller, place_on, node_spec, thresholds, each_node):
    def probe(node):
        if not _real(node_spec, node.name):
            return None, ""
        return _step_facts(controller, place_on(node), "", thresholds.job_start_s_max, node_spec[node.name].gpu_python)

    facts, failed = each_node(probe)
    assert not failed, f"a step without GRES failed on {gpu_node.name}: {failed}"
    problems = gpu_health.job_visibility_problems(gpu_node.name, 0, facts)
    assert not problems, "; ".join(problems)


def test_concurrent_single_gpu_steps_get_different_gpus(gpu_node, real_gpus, controller, place_on, node_spec,
                                                        thresholds, each_node):
    if real_gpus < 2:
        not_applicable(f"{gpu_node.name} has one GPU: nothing to share")
    hold = 1.0

    def probe(node):
        if _real(node_spec, node.name) < 2:
            return None
        return gpu.steps_side_by_side(controller, f"{place_on(node)} -n1 --gres=gpu:1",
                                      gpu.facts_command(in_job=True, hold_s=hold, python=node_spec[node.name].gpu_python),
                                      2, timeout=thresholds.job_start_s_max + hold)

    a, b = (gpu.parse_facts(gpu_node.name, text) for text in each_node(probe))
    problems = gpu_health.shared_gpu_problems(gpu_node.name, a, b)
    assert not problems, "; ".join(problems)
