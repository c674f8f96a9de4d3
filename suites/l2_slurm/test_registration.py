"""Layer 2: munge works across nodes, slurmctld answers, every configured node is registered,
usable, and has the CPUs, memory and GRES the config promises; jobs run on every node."""

from __future__ import annotations

import pytest

from pytest_hpcvalidate.probes import munge, slurm


@pytest.fixture(scope="module")
def slurm_nodes(controller):
    return slurm.show_nodes(controller)


def test_munge_credential_from_node_decodes_on_controller(compute_node, controller):
    result = munge.cross_decode(compute_node, controller)
    assert result.ok, result.describe()


def test_munge_credential_from_controller_decodes_on_node(compute_node, controller):
    result = munge.cross_decode(controller, compute_node)
    assert result.ok, result.describe()


def test_slurmctld_answers(controller):
    result = controller.run("scontrol ping", timeout=30)
    assert result.ok and "UP" in result.stdout, f"slurmctld does not answer: {result.describe()}"


def test_node_registered_and_usable(compute_node, slurm_nodes):
    sn = slurm_nodes.get(compute_node.name)
    assert sn is not None, f"{compute_node.name} is not registered in Slurm (known: {', '.join(sorted(slurm_nodes)) or 'none'})"
    assert sn.usable, f"{compute_node.name} is {sn.state_text} in Slurm" + (f", Reason={sn.reason}" if sn.reason else "")


def test_node_resources_match_config(compute_node, slurm_nodes, node_spec):
    want = node_spec[compute_node.name]
    sn = slurm_nodes.get(compute_node.name)
    assert sn is not None, f"{compute_node.name} is not registered in Slurm"
    problems = []
    if sn.cpus != want.cpus:
        problems.append(f"CPUs {sn.cpus}, config says {want.cpus}")
    if sn.real_memory_mb != want.memory_mb:
        problems.append(f"RealMemory {sn.real_memory_mb} MiB, config says {want.memory_mb}")
    if sn.gpu_count() != want.gpus:
        problems.append(f"GRES {sn.gres or 'none'}, config says gpu:{want.gpu_type}:{want.gpus}" if want.gpus else f"GRES {sn.gres}, config says none")
    assert not problems, f"{compute_node.name} in Slurm: " + "; ".join(problems)


def test_partitions_match_config(controller, hpc_config):
    parts = slurm.show_partitions(controller)
    want = {p.name: p for p in hpc_config.slurm.partitions}
    assert set(parts) == set(want), f"partitions in Slurm {sorted(parts)}, config says {sorted(want)}"
    default = hpc_config.slurm.default_partition.name
    actual_default = [p.name for p in parts.values() if p.default]
    assert actual_default == [default], f"default partition is {actual_default or 'none'}, config says {default}"


def test_a_job_step_runs_on_every_node(controller, cluster, thresholds):
    names = sorted(n.name for n in cluster.compute)
    result = slurm.srun(controller, f"-N{len(names)} --ntasks-per-node=1", "hostname", timeout=thresholds.job_start_s_max)
    assert result.ok, f"srun on all {len(names)} nodes failed: {result.describe()}"
    ran = sorted(result.stdout.split())
    assert ran == names, f"srun -N{len(names)} ran on {ran}, expected {names}"
