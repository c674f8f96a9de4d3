"""Layer 5, throughput (fio, JSON output): per node, sequential 1 MiB write and read and 4 KiB
random-read IOPS (O_DIRECT where the config says the filesystem supports it), the small-file
metadata rate; and the aggregate of every compute node at once, from one multi-node Slurm job.
Each number is a metric with its unit and the configured threshold."""

from __future__ import annotations

import shlex

import pytest

from pytest_hpcvalidate.probes import slurm, storage
from pytest_hpcvalidate.capabilities import not_applicable

pytestmark = pytest.mark.requires("storage")


#: (fio workload, what it reports, metric, unit, threshold field) of the per-node check
PER_NODE = (
    ("seq_write", "write_mibps", "storage_seq_write_mibps", "MiB/s", "seq_write_mibps_min"),
    ("seq_read", "read_mibps", "storage_seq_read_mibps", "MiB/s", "seq_read_mibps_min"),
    ("rand_read", "read_iops", "storage_rand_read_iops", "IOPS", "rand_read_iops_min"),
)


def test_fio_sequential_and_random_read(mount_case, cluster, scratch, metric):
    target, name = mount_case
    node = cluster.node(name)
    path = f"{scratch(target)}/fio-{name}"
    try:
        jobs, r = storage.run_fio(node, path, [w for w, *_ in PER_NODE], target.size_mib, target.runtime_s,
                                  target.direct_io)
    finally:
        node.run(f"rm -f {shlex.quote(path)}", timeout=60)
    missing = [w for w, *_ in PER_NODE if w not in jobs]
    assert not missing, f"{name}: fio {', '.join(missing)} on {target.mount_point} failed: {r.describe()}"
    measured = [metric(m, round(getattr(jobs[w], field), 2), unit, getattr(target.thresholds, limit), ">=",
                       node=f"{name}:{target.id}")
                for w, field, m, unit, limit in PER_NODE]
    failed = [m.message for m in measured if not m.passed]
    assert not failed, "; ".join(failed)


def test_small_file_metadata_rate(mount_case, cluster, scratch, metric):
    target, name = mount_case
    node = cluster.node(name)
    directory = f"{scratch(target)}/metadata-{name}"
    r = node.run(storage.metadata_command(directory, target.metadata_files), timeout=300)
    rate = storage.parse_metadata(r.stdout)
    node.run(f"rm -rf {shlex.quote(directory)}", timeout=120)
    assert rate is not None, f"{name}: creating/stat-ing/removing files on {target.mount_point} failed: {r.describe()}"
    m = metric("storage_metadata_ops", round(rate.ops_per_s, 1), "ops/s", target.thresholds.metadata_ops_min, ">=",
               node=f"{name}:{target.id}")
    assert m.passed, m.message


def test_aggregate_throughput_from_one_job(target, cluster, controller, scratch, partition_of, compute_names,
                                           thresholds, metric):
    """Every compute node of the filesystem writes, then reads, its own file at the same time
    (one task per node, one srun each); aggregate = all bytes over the span of the run."""
    nodes = target.compute_nodes(compute_names)
    if not nodes:
        not_applicable(f"no compute node mounts {target.mount_point}: no Slurm job can measure it")
    directory = f"{scratch(target)}/aggregate"
    cluster.node(nodes[0]).run(f"mkdir -p {shlex.quote(directory)}", timeout=30).check()
    t = target.thresholds
    where = f"{len(nodes)} nodes:{target.id}"
    measured = []
    for workload, side, threshold in (("seq_write", "write", t.aggregate_write_mibps_min),
                                      ("seq_read", "read", t.aggregate_read_mibps_min)):
        fio = storage.fio_command(f"{directory}/$(hostname).dat", [workload], target.size_mib, target.runtime_s,
                                  target.direct_io, output=f"{directory}/$(hostname)-{workload}.json")
        r = slurm.srun(controller, f"{partition_of(nodes)} -w {','.join(nodes)} -N{len(nodes)} --ntasks-per-node=1",
                       fio, timeout=thresholds.job_start_s_max + 300)
        assert r.ok, f"the {workload} job on {', '.join(nodes)} failed: {r.describe(800)}"
        reports = cluster.run_all(lambda n: f"cat {shlex.quote(f'{directory}/{n.name}-{workload}.json')}",
                                  nodes=[cluster.node(n) for n in nodes], timeout=60)
        jobs, missing = [], []
        for name, rep in reports.items():
            parsed = storage.parse_fio_or_empty(rep.stdout)
            jobs += parsed
            if not parsed:
                missing.append(name)
        assert not missing, f"no fio {workload} result from {', '.join(missing)} in {directory}"
        value = storage.aggregate_mibps(jobs, side)
        measured.append(metric(f"storage_aggregate_{side}_mibps", round(value, 2), "MiB/s", threshold, ">=",
                               node=where))
    cluster.node(nodes[0]).run(f"rm -rf {shlex.quote(directory)}", timeout=120)
    failed = [m.message for m in measured if not m.passed]
    assert not failed, "; ".join(failed)

