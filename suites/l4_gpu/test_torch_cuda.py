"""Layer 4, PyTorch CUDA through Slurm: on every real-GPU node one step with a task per GPU
(rank and world size from Slurm's environment) runs ``src/torch_check.py``: CUDA reachable on
the configured model, matmul TFLOP/s (bf16/fp16/fp32), host<->device copy bandwidth against
the PCIe link's rate, device memory bandwidth, a training loop whose loss falls, and an NCCL
all-reduce over the node's GPUs; then one all-reduce across every GPU node.

Every number is a metric with its unit and threshold (fractions of the model's datasheet
figures, ``thresholds.gpu_*``). The folder name says area ``gpu``; the layer is 4.
"""

from __future__ import annotations

import pytest

from pytest_hpcvalidate.config import gpu_models
from pytest_hpcvalidate.hostlist import expand
from pytest_hpcvalidate.probes import gpu_health, gpu_perf
from pytest_hpcvalidate.probes.gpu_perf import record
from pytest_hpcvalidate.capabilities import not_applicable

pytestmark = [pytest.mark.layer(4), pytest.mark.area("gpu"), pytest.mark.requires("nvml")]

#: what each node's step measures (its all-reduce is over the node's own GPUs)
NODE_TESTS = ["smoke", "matmul", "copy", "membw", "train", "allreduce"]
PORT = 29517
STEP_TIMEOUT_S = 300.0


@pytest.fixture(scope="module")
def torch_steps(controller, real_gpu_nodes, node_spec, place_on, thresholds):
    """{node: (ranks, how the step failed or "")}: one step per real-GPU node, all at once."""
    steps = {}
    for node in real_gpu_nodes:
        n = node_spec[node.name].gpus
        steps[node.name] = (f"{place_on(node)} -n{n} --gres=gpu:{n}",
                            gpu_perf.torch_command(NODE_TESTS, master=node.address, port=PORT,
                                                   python=node_spec[node.name].gpu_python))
    results = gpu_perf.run_steps(controller, steps, timeout=thresholds.job_start_s_max + STEP_TIMEOUT_S)
    return {name: (gpu_perf.parse_torch(r.stdout), "" if r.ok else r.describe(limit=800)) for name, r in results.items()}


@pytest.fixture
def ranks(gpu_node, node_spec, torch_steps) -> list[gpu_perf.TorchRank]:
    """The tasks of ``gpu_node``'s step that measured (skips when none could)."""
    if node_spec[gpu_node.name].gpu_simulated:
        not_applicable(f"{gpu_node.name}: its GPUs are simulated: CUDA does not apply")
    measured = [r for r in torch_steps[gpu_node.name][0] if not r.error]
    if not measured:
        pytest.skip(f"{gpu_node.name}: no task reached CUDA (test_torch_reaches_cuda_on_every_gpu says why)")
    return measured


def _spec(node_spec, node, r: gpu_perf.TorchRank):
    """The model table's row for the configured model, else for the GPU the task ran on."""
    return gpu_models.by_name(node_spec[node.name].gpu_model) or gpu_models.by_name(r.device_name)


def _assert_metrics(metric, metrics) -> None:
    recorded = [record(metric, m) for m in metrics]
    assert recorded, "the step reported no such measurement"
    failed = [m.message for m in recorded if not m.passed]
    assert not failed, "; ".join(failed)


def test_torch_reaches_cuda_on_every_gpu(gpu_node, node_spec, torch_steps):
    spec = node_spec[gpu_node.name]
    if spec.gpu_simulated:
        not_applicable(f"{gpu_node.name}: its GPUs are simulated: CUDA does not apply")
    ranks, failed = torch_steps[gpu_node.name]
    problems = gpu_perf.rank_problems(ranks, spec.gpus, spec.gpu_model) + ([failed] if failed else [])
    assert not problems, f"{gpu_node.name}: " + "; ".join(problems)


def test_matmul_throughput(gpu_node, ranks, node_spec, thresholds, metric):
    fraction = thresholds.gpu_matmul_peak_fraction_min
    _assert_metrics(metric, [m for r in ranks for m in gpu_perf.matmul_metrics(r, _spec(node_spec, gpu_node, r), fraction)])


def test_host_device_copy_bandwidth(gpu_node, ranks, node_spec, gpu_facts, thresholds, metric):
    """Pinned copies against the rate of the link the GPU should have (config or model)."""
    expectation = gpu_health.expectation_for(node_spec[gpu_node.name])
    by_address = gpu_facts[gpu_node.name].by_address()
    metrics = []
    for r in ranks:
        facts = by_address.get(r.pci_address)
        gen, width = expectation.link_for(facts) if facts else (expectation.pcie_gen, expectation.pcie_width)
        link = (gen, width) if gen and width else None
        metrics += gpu_perf.copy_metrics(r, link, thresholds.gpu_host_copy_link_fraction_min)
    _assert_metrics(metric, metrics)


def test_device_memory_bandwidth(gpu_node, ranks, node_spec, thresholds, metric):
    fraction = thresholds.gpu_memory_bw_peak_fraction_min
    _assert_metrics(metric, [m for r in ranks for m in gpu_perf.membw_metrics(r, _spec(node_spec, gpu_node, r), fraction)])


def test_training_loss_falls(ranks, thresholds, metric):
    _assert_metrics(metric, [m for r in ranks for m in gpu_perf.train_metrics(r, thresholds.gpu_train_loss_ratio_max)])


def test_nccl_allreduce_over_the_nodes_gpus(gpu_node, ranks, thresholds, metric):
    metrics, problems = gpu_perf.allreduce_metrics(ranks, thresholds.gpu_allreduce_busbw_gbps_min, gpu_node.name)
    assert not problems, f"{gpu_node.name}: " + "; ".join(problems)
    _assert_metrics(metric, metrics)


def test_nccl_allreduce_across_gpu_nodes(controller, real_gpu_nodes, node_spec, hpc_config, thresholds, metric):
    if len(real_gpu_nodes) < 2:
        not_applicable("fewer than two nodes with real GPUs: nothing to reduce across")
    per_node = min(node_spec[n.name].gpus for n in real_gpu_nodes)
    names = ",".join(n.name for n in real_gpu_nodes)
    partition = next((f"-p {p.name} " for p in hpc_config.slurm.partitions
                      if p.nodes == "ALL" or set(names.split(",")) <= set(expand(p.nodes))), "")
    args = f"{partition}-w {names} -N{len(real_gpu_nodes)} --ntasks-per-node={per_node} --gres=gpu:{per_node}"
    command = gpu_perf.torch_command(["allreduce"], master=real_gpu_nodes[0].address, port=PORT + 1,
                                     python=node_spec[real_gpu_nodes[0].name].gpu_python)
    r = gpu_perf.run_steps(controller, {"all": (args, command)}, thresholds.job_start_s_max + STEP_TIMEOUT_S)["all"]
    ranks = gpu_perf.parse_torch(r.stdout)
    problems = gpu_perf.rank_problems(ranks, per_node * len(real_gpu_nodes), None)
    metrics, reduce_problems = gpu_perf.allreduce_metrics(ranks, thresholds.gpu_allreduce_busbw_gbps_min, names)
    assert r.ok and not problems + reduce_problems, f"all-reduce across {names}: " + "; ".join(
        problems + reduce_problems + ([] if r.ok else [r.describe(limit=800)]))
    _assert_metrics(metric, metrics)
