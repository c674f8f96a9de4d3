"""Layer 4, containers: applications in the image across nodes — an MPI program launched by
``srun --mpi=pmix`` through the runtime, PyTorch with torch.distributed ranks from Slurm — and
Slurm's own ``srun --container`` where an OCI bundle is configured."""

from __future__ import annotations

import uuid

import pytest

from pytest_hpcvalidate.probes import containers as ctr
from pytest_hpcvalidate.probes import mpi
from pytest_hpcvalidate.capabilities import not_applicable

pytestmark = pytest.mark.requires("containers")


def _shared(cluster) -> str:
    if cluster.shared_dir is None:
        pytest.skip("the cluster has no directory shared by every node to put the programs in")
    return str(cluster.shared_dir)


def test_mpi_in_container_spans_every_compute_node(controller, cluster, runtime, all_compute_partition, thresholds):
    """``srun --mpi=pmix`` + the runtime: one rank per compute node, the program (built on the
    cluster, run from the shared directory inside the image) reports every rank and a correct
    allreduce."""
    binary, built = mpi.build(cluster.compute[0], f"{_shared(cluster)}/hpcv-mpi-ctr")
    assert built.ok, f"compiling {mpi.SOURCE.name} with mpicc failed: {built.describe()}"
    hosts = sorted(n.name for n in cluster.compute)
    r = ctr.srun(controller, runtime,
                 f"{all_compute_partition} -N{len(hosts)} --ntasks-per-node=1 --mpi=pmix {mpi.KILL_ON_BAD_EXIT}",
                 f"{binary} ranks", timeout=thresholds.job_start_s_max + 30)
    problems = mpi.parse_ranks(r.stdout).problems(len(hosts), hosts)
    if not r.ok:
        problems.append(r.describe(limit=1500))
    assert not problems, f"MPI in {runtime.image} on {', '.join(hosts)}: " + "; ".join(problems)


@pytest.mark.requires("container-torch")
def test_torch_distributed_in_container_across_two_nodes(controller, cluster, runtime, containers, node_spec,
                                                         thresholds):
    """PyTorch in the image on two nodes: the configured torch (and Python) version, a correct
    matmul, and a torch.distributed all-reduce (gloo; NCCL where CUDA is) over ranks from Slurm.
    On nodes with real GPUs each rank holds one and CUDA must be available inside."""
    if len(cluster.compute) < 2:
        not_applicable("one compute node: torch.distributed across nodes needs two")
    shared = _shared(cluster)
    script, copied = ctr.install_torch_script(cluster.compute[0], f"{shared}/hpcv-torch")
    assert copied.ok, f"copying the torch check to {shared}: {copied.describe()}"
    pair = [n.name for n in cluster.compute[:2]]
    real_gpus = all(node_spec[h].gpus and not node_spec[h].gpu_simulated for h in pair)
    gres = "--gres=gpu:1" if real_gpus else ""
    store = f"{shared}/hpcv-torch/store-{uuid.uuid4().hex}"
    r = ctr.srun(controller, runtime, f"-w {','.join(pair)} -N2 --ntasks-per-node=1 {gres} {mpi.KILL_ON_BAD_EXIT}",
                 f"{containers.python_command} {script} {store}", timeout=thresholds.job_start_s_max + 120,
                 gpu=real_gpus)
    cluster.compute[0].run(f"rm -f {store}", timeout=10)
    report = ctr.parse_torch(r.stdout)
    problems = report.problems(2, pair)
    want_torch, want_py = containers.expect.torch, containers.expect.python
    for rank in report.ranks.values():
        if want_torch and rank.version.split(".")[:len(want_torch.split("."))] != want_torch.split("."):
            problems.append(f"rank {rank.rank} on {rank.host} has torch {rank.version}, the config expects {want_torch}")
        if want_py and not rank.python.startswith(want_py):
            problems.append(f"rank {rank.rank} on {rank.host} runs Python {rank.python}, the config expects {want_py}")
        if real_gpus and not rank.cuda:
            problems.append(f"rank {rank.rank} on {rank.host} holds a GPU but CUDA is not available in the container")
    if not r.ok:
        problems.append(r.describe(limit=1500))
    assert not problems, f"torch in {runtime.image} on {', '.join(pair)}: " + "; ".join(problems)


@pytest.mark.requires("slurm-oci")
def test_slurm_container_step_runs_in_the_bundle(compute_node, controller, containers, place_on, thresholds):
    """``srun --container=BUNDLE`` (Slurm's oci.conf) runs a step in the bundle on every node.

    Slurm 22.05 with runc and ConstrainDevices: a step that does not hold all of a node's GRES
    cannot start a container (runc cannot write ``c *:* m`` to devices.allow); that is reported
    as a configuration finding, naming the workaround."""
    bundle = str(containers.image if containers.runtime == "slurm-oci" else containers.oci_bundle)
    rt = ctr.Runtime("slurm-oci", bundle)
    r = ctr.srun(controller, rt, f"{place_on(compute_node)} -n1", ctr.IDENTITY, timeout=thresholds.job_start_s_max)
    if not r.ok and "operation not permitted" in (r.stderr + r.stdout).lower() and "devices" in (r.stderr + r.stdout):
        pytest.fail(f"{compute_node.name}: configuration finding: Slurm's --container (runc) cannot start a step that "
                    "does not hold all of the node's GRES while cgroup.conf ConstrainDevices=yes (Slurm 22.05); "
                    f"request every GPU of the node with --container, or use charliecloud/apptainer under srun: "
                    f"{r.describe()}")
    assert r.ok, f"{compute_node.name}: a step with --container={bundle} failed: {r.describe()}"
    inside = ctr.parse_identity(r.stdout.splitlines()).os_release
    want = containers.expect.os_release
    assert inside and (want is None or want in inside), (
        f"{compute_node.name}: a --container={bundle} step reports OS {inside!r}; the config expects {want!r}"
    )
