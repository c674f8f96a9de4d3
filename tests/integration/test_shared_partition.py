"""A partition whose jobs share CPUs on purpose (``slurm.partitions[].oversubscribe``): the
local provider writes it with ``OverSubscribe=FORCE:2``, where two jobs each granted all of a
node's CPUs really do run side by side on them; the partition check accepts it, and the
check that jobs never share their CPUs is not applicable to a node only that partition holds,
while it still runs, and passes, on a node of a partition that does not share."""

from __future__ import annotations


import clusterkit
import pytest

from pytest_hpcvalidate.probes import isolation

CHECK = "test_jobs_never_share_the_cpus_they_were_granted"
pytestmark = [pytest.mark.integration, clusterkit.needs_local]

BODY = {
    "controller": {"name": "ctl", "cpus": 1, "memory_mb": 512},
    "compute": [{"names": "c[1-2]", "cpus": 2, "memory_mb": 512}],
    "slurm": {"partitions": [{"name": "batch", "nodes": "c2", "default": True},
                             {"name": "shared", "nodes": "c1", "oversubscribe": True}]},
}


def test_a_partition_declared_to_share_cpus_is_written_so_and_exempt_from_the_sharing_check(tmp_path, pytester):
    with clusterkit.running_cluster("ov", BODY, tmp_path) as (engine, path):
        conf = engine.slurm_conf.read_text()
        assert "PartitionName=shared Nodes=c1 Default=NO MaxTime=UNLIMITED OverSubscribe=FORCE:2 State=UP" in conf, conf
        assert "PartitionName=batch Nodes=c2 Default=YES MaxTime=UNLIMITED State=UP" in conf, conf
        args = "-p shared -w c1 -N1 -n1 -c 2 --mem=32"
        r = engine.cluster.controller.run(isolation.side_by_side([args, args], isolation.step_facts_command([], 1.0)),
                                          timeout=60)
        (a,), (b,) = (isolation.parse_step_facts(out) for out in isolation.split_side_by_side(r.stdout, 2))
        assert isolation.overlapped(a, b) and a.cpus & b.cpus, (
            f"two whole-node jobs in the shared partition did not share c1's CPUs: {r.describe()}")
        results = clusterkit.run_checks(pytester, path,
                                        "l2_slurm/test_registration.py::test_partitions_match_config",
                                        f"l3_cgroup/test_isolation.py::{CHECK}")
    assert results["test_partitions_match_config"][0] == "passed", results
    assert results[f"{CHECK}[c2]"][0] == "passed", results
    outcome, message = results[f"{CHECK}[c1]"]
    assert outcome == "skipped" and "c1 is only in partitions whose jobs share CPUs on purpose" in message, results
