"""Fixtures the layered suites share (beyond the plugin's cluster/node fixtures)."""

from __future__ import annotations

import pytest

from pytest_hpcvalidate.probes import gpu, slurm


@pytest.fixture(scope="session")
def gres_files(cluster):
    """{node: [device files gres.conf gives it for gpu]}, read from gres.conf on each node."""
    out = {}
    for node in cluster.compute:
        r = node.run(f"cat {slurm.config_dir(node)}/gres.conf", timeout=20)
        out[node.name] = slurm.gres_files_for(slurm.parse_gres_conf(r.stdout), node.name) if r.ok else []
    return out


@pytest.fixture(scope="session")
def place_on(hpc_config, node_spec):
    """``place_on(node)`` → srun/sbatch options for a one-node job on ``node``, in a partition
    that contains it (the default partition when it does)."""
    from pytest_hpcvalidate.hostlist import expand

    parts = sorted(hpc_config.slurm.partitions, key=lambda p: not p.default)

    def options(node) -> str:
        part = next((p.name for p in parts if p.nodes == "ALL" or node.name in expand(p.nodes)), None)
        return (f"-p {part} " if part else "") + f"-w {node.name} -N1"

    return options


@pytest.fixture(scope="session")
def real_gpu_nodes(cluster, node_spec):
    """The nodes the config gives real (not simulated) GPUs."""
    return [cluster.node(name) for name, spec in node_spec.items() if spec.gpus and not spec.gpu_simulated]


@pytest.fixture(scope="session")
def gpu_facts(cluster, real_gpu_nodes, node_spec):
    """{node: NodeGpuFacts}, read through NVML (the node's ``gpus.python``) on every real-GPU
    node at once; the L1 health checks and the L4 CUDA checks judge the same reading."""
    return gpu.gather_facts(cluster, real_gpu_nodes, pythons={n.name: node_spec[n.name].gpu_python for n in real_gpu_nodes})
