"""Layer 4, MPI over PMIx: Slurm offers pmix, an MPI program built on the cluster runs across
every compute node with every rank reporting and a correct allreduce, and point-to-point
latency and bandwidth between two nodes hold their thresholds."""

from __future__ import annotations

import pytest

from pytest_hpcvalidate.hostlist import expand
from pytest_hpcvalidate.probes import mpi, slurm
from pytest_hpcvalidate.capabilities import not_applicable


@pytest.fixture(scope="module")
def mpi_binary(cluster):
    """The check program, compiled on a compute node into the directory every node sees."""
    if cluster.shared_dir is None:
        pytest.skip("the cluster has no directory shared by every node to put the MPI program in")
    binary, result = mpi.build(cluster.compute[0], f"{cluster.shared_dir}/hpcv-mpi")
    assert result.ok, f"compiling {mpi.SOURCE.name} with mpicc failed: {result.describe()}"
    return binary


def test_srun_offers_pmix(controller):
    r = controller.run("srun --mpi=list", timeout=30)
    plugins = mpi.plugin_types(r.stdout + "\n" + r.stderr)
    assert "pmix" in plugins, f"srun --mpi=list offers {plugins or 'nothing'} ({r.describe()}): no pmix plugin"


def test_mpi_default_is_the_configured_plugin(controller, hpc_config):
    value = slurm.mpi_default(slurm.show_config(controller))
    want = hpc_config.slurm.mpi_default
    assert value == want, f"slurm.conf MpiDefault is {value or 'unset'}, the config says {want}"


def _every_compute_node(slurm_partitions, cluster, job_cpus) -> tuple[list[str], int, int, str]:
    """(hosts, ranks per node, ranks, -p option): one rank per CPU jobs may use on the smallest
    compute node, on every compute node, in a partition holding them all."""
    hosts = sorted(n.name for n in cluster.compute)
    partition = _partition_with_all(slurm_partitions, hosts)
    per_node = max(1, min(job_cpus(h, partition) for h in hosts))
    return hosts, per_node, per_node * len(hosts), _option(partition)


def test_mpi_ranks_span_every_compute_node(controller, cluster, slurm_partitions, job_cpus, mpi_binary, thresholds):
    """With Slurm's default MPI plugin (no --mpi flag): one rank per CPU of the smallest node on
    every compute node, each reports, world size right, allreduce sum right."""
    hosts, per_node, ntasks, partition = _every_compute_node(slurm_partitions, cluster, job_cpus)
    r = slurm.srun(controller, f"{partition} -N{len(hosts)} --ntasks-per-node={per_node} {mpi.KILL_ON_BAD_EXIT}",
                   f"{mpi_binary} ranks", timeout=thresholds.job_start_s_max + 30)
    report = mpi.parse_ranks(r.stdout)
    problems = report.problems(ntasks, hosts)
    if not r.ok:
        problems.append(r.describe(limit=1500))
    assert not problems, f"MPI job of {ntasks} ranks on {', '.join(hosts)}: " + "; ".join(problems)


def test_mpirun_inside_a_batch_job_spans_every_compute_node(controller, cluster, slurm_partitions, job_cpus, mpi_binary,
                                                            thresholds):
    """The other way users start MPI: ``mpirun`` inside an ``sbatch`` allocation (Open MPI reads
    the allocation from Slurm and starts its daemons with srun): every rank reports, on every
    compute node, world size and allreduce right."""
    hosts, per_node, ntasks, partition = _every_compute_node(slurm_partitions, cluster, job_cpus)
    run = slurm.batch_run(controller, cluster.shared_dir, "mpirun",
                          f"{partition} -N{len(hosts)} --ntasks-per-node={per_node}",
                          mpi.mpirun_script(mpi_binary, "ranks"), timeout=thresholds.job_start_s_max + 60)
    assert run.job_id is not None, f"sbatch failed: {run.submitted.describe()}"
    problems = mpi.parse_ranks(run.output.stdout if run.output else "").problems(ntasks, hosts)
    info = run.info
    if info is None or info.state != "COMPLETED":
        problems.append(f"the job ended {info.state if info else 'unseen'} "
                        f"(exit {info.exit_code if info else '?'}): {run.output_said(controller.name)}")
    assert not problems, f"mpirun in batch job {run.job_id} ({ntasks} ranks on {', '.join(hosts)}): " + "; ".join(problems)


def test_point_to_point_latency_and_bandwidth(controller, cluster, slurm_partitions, job_cpus, mpi_binary, thresholds,
                                              metric):
    """Ping-pong between the first two compute nodes, each rank owning all of its node's CPUs
    (a rank pinned to a core shared with other work measures the scheduler, not the network)."""
    if len(cluster.compute) < 2:
        not_applicable("one compute node: no pair to measure between")
    a, b = cluster.compute[0], cluster.compute[1]
    partition = _partition_with_all(slurm_partitions, [a.name, b.name])
    cpus = min(job_cpus(a.name, partition), job_cpus(b.name, partition))
    r = slurm.srun(controller,
                   f"{_option(partition)} -w {a.name},{b.name} -N2 --ntasks-per-node=1 -c {cpus} {mpi.KILL_ON_BAD_EXIT}",
                   f"{mpi_binary} pingpong 2000", timeout=thresholds.job_start_s_max + 60)
    result = mpi.parse_pingpong(r.stdout)
    assert r.ok and result.latency_us is not None and result.bandwidth_mibps is not None, (
        f"MPI ping-pong {a.name} <-> {b.name} failed: {r.describe()}"
    )
    pair = f"{a.name}<->{b.name}"
    lat = metric("mpi_latency_us", result.latency_us, "us", thresholds.mpi_latency_us_max, "<=", node=pair)
    bw = metric("mpi_bandwidth_mibps", result.bandwidth_mibps, "MiB/s", thresholds.mpi_bandwidth_mibps_min, ">=",
                node=pair)
    failed = [m.message for m in (lat, bw) if not m.passed]
    assert not failed, f"MPI {pair}: " + "; ".join(failed)


def _partition_with_all(partitions, hosts: list[str]) -> str | None:
    """A partition containing every host in ``hosts`` (None: leave it to the default)."""
    return next((p.name for p in partitions.values() if p.nodes == "ALL" or set(hosts) <= set(expand(p.nodes))), None)


def _option(partition: str | None) -> str:
    return f"-p {partition}" if partition else ""
