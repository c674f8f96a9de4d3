"""Every layer-5 storage check goes red when the thing it checks is broken, naming the node
(and brick); a crashed run's GlusterFS is cleaned up.

One real local cluster (controller + 2 compute nodes, GlusterFS bricks on both compute nodes,
mounted on all three) serves the module. Each test breaks one thing with
``pytest_hpcvalidate.faults.storage`` (or ``faults.network``), runs the shipped
``suites/l5_storage`` checks through the plugin against the running cluster (``--hpc-reuse``),
asserts which checks fail and what they say, and repairs the fault. The first test proves the
healthy cluster passes every check, so each red result below is the fault's doing.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import clusterkit
import pytest
import yaml

from pytest_hpcvalidate.faults import network as netfaults
from pytest_hpcvalidate.faults import storage as storagefaults
from pytest_hpcvalidate.probes import users
from pytest_hpcvalidate.providers.local.cleanup import cleanup_stale, leftovers
from pytest_hpcvalidate.providers.local.state import STATE_FILE, State

SUITE = Path(__file__).resolve().parents[2] / "suites" / "l5_storage"
MP = "/mnt/hpcv-faults"
pytestmark = [pytest.mark.integration, clusterkit.needs_local]

STORAGE = {
    "kind": "glusterfs", "mount_point": MP, "nodes": "ctl,c[1-2]", "storage_nodes": ["c1", "c2"],
    "source": "c1:/hpcv-faults", "test_size_mib": 16, "test_runtime_s": 1, "metadata_files": 50,
    "brick_size_mib": 512,  # bricks of their own (tmpfs: memory only as they fill), so one can fill up
    "thresholds": {"seq_write_mibps_min": 20, "seq_read_mibps_min": 10, "rand_read_iops_min": 50,
                   "metadata_ops_min": 10, "free_space_gib_min": 0.25, "coherency_s_max": 3},
}
BODY = {
    "controller": {"name": "ctl", "cpus": 1, "memory_mb": 512},
    "compute": [{"names": "c[1-2]", "cpus": 1, "memory_mb": 512}],
    "storage": [STORAGE],
    "slurm": {"users": ["hpcv"]},
}


gluster_cluster = clusterkit.module_cluster("st", BODY, "gluster_cluster")


def run_suite(pytester, path: Path, *selection: str) -> dict[str, tuple[str, str]]:
    """Run l5_storage checks (``file.py[::test]``, all when none) against the running cluster."""
    return clusterkit.run_checks(pytester, path, *selection, suite_dir=SUITE)


failed = clusterkit.failures


HEALTH = "test_glusterfs_peers_connected_and_every_brick_online_with_room"


def test_healthy_cluster_passes_every_storage_check(gluster_cluster, pytester):
    _, path = gluster_cluster
    results = run_suite(pytester, path)
    assert failed(results) == {}
    passed = sorted(k for k, (outcome, _) in results.items() if outcome == "passed")
    # 3 mounts, 3 fio, 3 metadata, 3 coherency pairs, free space, many writers, a user's files,
    # aggregate, gluster health
    assert len(passed) == 17, passed
    skipped = [k for k, (outcome, _) in results.items() if outcome == "skipped"]
    assert skipped == [f"test_beegfs_services_reachable_and_targets_online_good[{MP}]"]


def test_brick_killed_fails_health_naming_the_brick_node(gluster_cluster, pytester):
    engine, path = gluster_cluster
    with storagefaults.brick_killed(engine, "c2", MP) as vol:
        results = run_suite(pytester, path, "test_health.py")
    bad = failed(results)
    assert list(bad) == [f"{HEALTH}[{MP}]"]
    assert f"brick c2:{engine.work_dir}/bricks/{vol.name}/c2 of volume {vol.name} on c2 is offline" in bad[
        f"{HEALTH}[{MP}]"]


def test_brick_filled_up_fails_health_naming_the_brick_while_the_volume_has_room(gluster_cluster, pytester):
    engine, path = gluster_cluster
    with storagefaults.brick_filled(engine, "c1", MP, leave_mib=40) as vol:
        results = run_suite(pytester, path, "test_health.py", "test_mounts.py::test_free_space_above_threshold")
    bad = failed(results)
    # the volume as a whole still has room (df passes): only the per-brick view shows it
    assert list(bad) == [f"{HEALTH}[{MP}]"]
    msg = bad[f"{HEALTH}[{MP}]"]
    assert f"brick c1:{engine.work_dir}/bricks/{vol.name}/c1 of volume {vol.name} on c1 has 0.0" in msg
    assert "GiB free of 0.50 GiB; the minimum is 0.25 GiB" in msg


def test_unmounted_on_one_node_fails_its_mount_check(gluster_cluster, pytester):
    engine, path = gluster_cluster
    with storagefaults.unmounted(engine, "c1", MP):
        results = run_suite(pytester, path, "test_mounts.py::test_mounted_with_type_source_read_write")
    bad = failed(results)
    assert list(bad) == [f"test_mounted_with_type_source_read_write[c1:{MP}]"]
    assert f"c1: nothing is mounted at {MP} (expected glusterfs)" in bad[
        f"test_mounted_with_type_source_read_write[c1:{MP}]"]


def test_stale_directory_on_one_node_fails_coherency_naming_it(gluster_cluster, pytester):
    engine, path = gluster_cluster
    with storagefaults.stale_directory(engine, "c2", MP):
        results = run_suite(pytester, path, "test_coherency.py", "test_mounts.py::test_mounted_with_type_source_read_write")
    bad = failed(results)
    # the ring is ctl->c1->c2->ctl: c2 does not see c1's file, and nobody sees what c2 writes
    assert sorted(bad) == sorted([
        f"test_write_rename_delete_visible_on_other_node[c1->c2:{MP}]",
        f"test_write_rename_delete_visible_on_other_node[c2->ctl:{MP}]",
        f"test_one_job_writing_from_every_node_leaves_every_file_complete[{MP}]",
        f"test_mounted_with_type_source_read_write[c2:{MP}]",
        f"test_files_a_users_job_writes_are_theirs_on_every_node[{MP}]",  # hpcv's job cannot write there on c2
    ])
    assert "c2 does not see a new file written on c1" in bad[f"test_write_rename_delete_visible_on_other_node[c1->c2:{MP}]"]
    assert "it sees nothing (missing)" in bad[f"test_write_rename_delete_visible_on_other_node[c1->c2:{MP}]"]
    assert "on c2:" in bad[f"test_write_rename_delete_visible_on_other_node[c2->ctl:{MP}]"]
    assert "c2: " in bad[f"test_one_job_writing_from_every_node_leaves_every_file_complete[{MP}]"]
    owned = bad[f"test_files_a_users_job_writes_are_theirs_on_every_node[{MP}]"]
    assert re.search(r"a job of hpcv writing into \S+ from c1, c2 failed: on ctl: `srun -p \w+ -w c1,c2 -N2 "
                     r"--ntasks-per-node=1 --chdir=/tmp /bin/sh -c .*  \(as hpcv\)` exit 2 .*owned-by-hpcv/c2: Directory nonexistent",
                     owned, re.S), owned


def test_threshold_above_what_the_filesystem_delivers_fails_with_number_and_threshold(gluster_cluster, pytester):
    _, path = gluster_cluster
    doc = yaml.safe_load(path.read_text())
    doc["storage"][0]["thresholds"]["seq_write_mibps_min"] = 100000
    strict = pytester.path / "too-high.yaml"
    strict.write_text(yaml.safe_dump(doc, sort_keys=False))
    results = run_suite(pytester, strict, f"test_throughput.py::test_fio_sequential_and_random_read[c1:{MP}]")
    bad = failed(results)
    assert list(bad) == [f"test_fio_sequential_and_random_read[c1:{MP}]"]
    msg = bad[f"test_fio_sequential_and_random_read[c1:{MP}]"]
    assert f"storage_seq_write_mibps on c1:{MP} = " in msg and "MiB/s, below the minimum 100000 MiB/s" in msg
    assert "storage_seq_read_mibps" not in msg  # the other numbers held their thresholds


def test_aggregate_threshold_above_what_the_filesystem_delivers_fails_with_number_and_threshold(gluster_cluster,
                                                                                               pytester):
    """The one-job aggregate check against thresholds no volume of three local nodes reaches:
    both numbers fail, each named with its nodes, value and threshold."""
    _, path = gluster_cluster
    doc = yaml.safe_load(path.read_text())
    doc["storage"][0]["thresholds"].update(aggregate_write_mibps_min=100000, aggregate_read_mibps_min=100000)
    strict = pytester.path / "aggregate-too-high.yaml"
    strict.write_text(yaml.safe_dump(doc, sort_keys=False))
    results = run_suite(pytester, strict, "test_throughput.py::test_aggregate_throughput_from_one_job")
    bad = failed(results)
    assert len(bad) == 1, results
    (msg,) = bad.values()
    for side in ("write", "read"):
        assert re.search(rf"storage_aggregate_{side}_mibps on \d+ nodes:\S+ = [\d.]+ MiB/s, below the minimum 100000 MiB/s",
                         msg), msg


def test_throttled_link_drops_the_node_below_its_write_threshold(gluster_cluster, pytester):
    engine, path = gluster_cluster
    # ctl holds no brick: everything it writes leaves through its (shaped) link
    with netfaults.rate_limited(engine, "ctl", 40):
        results = run_suite(pytester, path, f"test_throughput.py::test_fio_sequential_and_random_read[ctl:{MP}]")
    bad = failed(results)
    assert list(bad) == [f"test_fio_sequential_and_random_read[ctl:{MP}]"]
    assert f"storage_seq_write_mibps on ctl:{MP} = " in bad[f"test_fio_sequential_and_random_read[ctl:{MP}]"]
    assert "below the minimum 20 MiB/s" in bad[f"test_fio_sequential_and_random_read[ctl:{MP}]"]


# -- a crashed run ---------------------------------------------------------------------------------

CRASHING_RUN = textwrap.dedent("""
    import sys, time
    from pytest_hpcvalidate.config import load_config
    from pytest_hpcvalidate.providers.local.engine import LocalCluster
    from pytest_hpcvalidate.providers.local.provider import spec_from_config
    LocalCluster(spec_from_config(load_config(sys.argv[1]))).up()
    print("READY", flush=True)
    time.sleep(600)
""")


def _gluster_pids(state: State) -> list[int]:
    pids = []
    for r in state.of_kind("process"):
        if r["what"].startswith("gluster") and os.path.exists(f"/proc/{r['pid']}"):
            pids.append(r["pid"])
    return pids


def test_glusterfs_of_a_killed_run_is_removed_by_cleanup(tmp_path):
    """The provisioning process dies by SIGKILL with the volume mounted everywhere; what it left
    (glusterd, bricks, FUSE clients in the node namespaces) is found and removed by cleanup."""
    body = {**BODY, "storage": [{**STORAGE, "source": None, "nodes": "c[1-2]"}]}
    name, text = clusterkit.config_yaml("sk", body)
    cfg = tmp_path / "crash.yaml"
    cfg.write_text(text)
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_RUN, str(cfg)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "READY", "the cluster did not come up"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        state = State.load(clusterkit.STATE_ROOT / name / STATE_FILE)
        left = _gluster_pids(state)
        whats = {r["what"] for r in state.of_kind("process") if r["pid"] in left}
        assert whats == {"glusterd", "glusterfsd", "glusterfs-client"}, whats
        assert cleanup_stale(cluster=name) == []
        assert [p for p in left if os.path.exists(f"/proc/{p}") and "Z" not in
                Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]] == []
        assert leftovers(name) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        clusterkit.remove(name)


def test_node_that_maps_the_users_ids_fails_the_ownership_check_naming_it(gluster_cluster, pytester):
    """ctl sees the volume through bindfs mapping hpcv's uid and gid to 65534 (nobody): only the
    ownership check fails, naming ctl and both files."""
    engine, path = gluster_cluster
    uid = users.parse_passwd((engine.work_dir / "etc" / "passwd").read_text())["hpcv"].uid
    with storagefaults.ids_mapped_on_node(engine, "ctl", MP, uid, 65534):
        results = run_suite(pytester, path, "test_coherency.py::test_files_a_users_job_writes_are_theirs_on_every_node")
    msg = failed(results)[f"test_files_a_users_job_writes_are_theirs_on_every_node[{MP}]"]
    for writer in ("c1", "c2"):
        assert (f"ctl sees the file hpcv's job wrote on {writer} owned by uid 65534 gid 65534, not hpcv's uid {uid} "
                f"gid {uid}") in msg, msg
    assert "c1 sees" not in msg and "c2 sees" not in msg and "the filesystem maps ids" in msg
    fstype = engine.cluster.node("ctl").run(f"findmnt -n -o FSTYPE --target {MP}").stdout.split()
    assert fstype == ["fuse.glusterfs"], fstype  # bindfs gone again, the volume's own mount back on top
