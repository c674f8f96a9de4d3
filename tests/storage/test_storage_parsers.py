"""The storage probes' parsers and verdicts against recorded GlusterFS/fio outputs
(``fixtures/storage``) and BeeGFS outputs written from its sources (``fixtures/beegfs``):
healthy outputs give no problem, every degraded variant gives one naming node and target."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pytest_hpcvalidate.probes import storage

FIX = Path(__file__).resolve().parents[2] / "fixtures"


def text(name: str) -> str:
    return (FIX / name).read_text()


# -- mounts, df -------------------------------------------------------------------------------

def test_mount_at_finds_the_glusterfs_mount_over_the_overlay():
    mounts = storage.parse_mounts(text("storage/proc-mounts-glusterfs-client.txt"))
    entry = storage.mount_at(mounts, "/mnt/shared/")
    assert (entry.source, entry.fstype, entry.read_write) == ("c1:/shared", "fuse.glusterfs", True)
    assert storage.mount_problems("c1", entry, "/mnt/shared", "glusterfs", "c1:/shared") == []
    assert storage.mount_at(mounts, "/mnt").fstype == "overlay"


@pytest.mark.parametrize("line, kind, source, expected", [
    (None, "glusterfs", None, "c2: nothing is mounted at /mnt/shared (expected glusterfs)"),
    ("/dev/vda /mnt/shared ext4 rw,relatime 0 0", "glusterfs", None,
     "c2: /mnt/shared is ext4 from /dev/vda, expected fuse.glusterfs"),
    ("c3:/other /mnt/shared fuse.glusterfs rw 0 0", "glusterfs", "c1:/shared",
     "c2: /mnt/shared is mounted from c3:/other, the config says c1:/shared"),
    ("c1:/shared /mnt/shared fuse.glusterfs ro,relatime 0 0", "glusterfs", None,
     "c2: /mnt/shared is mounted read-only (ro,relatime)"),
    ("tag0 /mnt/shared virtiofs rw 0 0", "nfs", None, "c2: /mnt/shared is virtiofs from tag0, expected nfs/nfs4"),
])
def test_mount_problems_name_the_node_and_what_is_wrong(line, kind, source, expected):
    entry = storage.parse_mounts(line)[0] if line else None
    assert expected in storage.mount_problems("c2", entry, "/mnt/shared", kind, source)


def test_mount_escapes_and_generic_kind():
    entry = storage.parse_mounts(r"srv:/a\040b /mnt/with\040space xfs rw 0 0")[0]
    assert (entry.source, entry.target) == ("srv:/a b", "/mnt/with space")
    assert storage.mount_problems("n", entry, "/mnt/with space", "generic", None) == []


def test_df():
    space = storage.parse_df(text("storage/df-glusterfs.txt"))
    assert space.avail_bytes == 243947335680 and space.mounted_on == "/mnt/shared"
    assert round(space.avail_gib, 1) == 227.2
    assert storage.parse_df("df: /mnt/x: No such file or directory\n") is None


# -- fio, metadata ------------------------------------------------------------------------------

def test_fio_three_workloads():
    jobs = {j.name: j for j in storage.parse_fio(text("storage/fio-three-workloads.json"))}
    assert list(jobs) == ["seq_write", "seq_read", "rand_read"]
    assert all(j.error == 0 for j in jobs.values())
    w, r, rr = jobs["seq_write"], jobs["seq_read"], jobs["rand_read"]
    assert w.write_bytes == 64 * storage.MIB and w.read_bytes == 0 and w.write_mibps > 10
    assert r.read_bytes == 64 * storage.MIB and r.read_mibps > 10
    assert rr.read_iops > 50 and 900 <= rr.runtime_ms <= 1100


def test_fio_with_warnings_before_the_json_and_without_json():
    body = text("storage/fio-randread.json")
    jobs = storage.parse_fio("fio: this platform does not support process shared mutexes\n" + body)
    assert jobs[0].name == "randr" and jobs[0].read_iops > 0
    with pytest.raises(ValueError, match="no fio JSON"):
        storage.parse_fio("fio: pid=0, err=2/file:filesetup.c:174, error=No such file or directory\n")
    assert storage.parse_fio_or_empty("nothing") == []


def test_aggregate_is_bytes_over_the_span_not_a_sum_of_rates():
    a = storage.FioJob("w", 0, 0, 100 * storage.MIB, 0, 100 * storage.MIB, 0, 0, runtime_ms=1000, end_ms=10_000)
    b = storage.FioJob("w", 0, 0, 100 * storage.MIB, 0, 100 * storage.MIB, 0, 0, runtime_ms=1000, end_ms=11_000)
    # back to back, not together: 200 MiB in 2 s, although each ran at 100 MiB/s
    assert storage.aggregate_mibps([a, b], "write") == pytest.approx(100.0)
    assert storage.aggregate_mibps([a], "write") == pytest.approx(100.0)
    assert storage.aggregate_mibps([], "write") == 0.0


def test_fio_command_keeps_hostname_expansion_and_limits_only_the_random_run():
    cmd = storage.fio_command("/mnt/s/$(hostname).dat", ["seq_write", "rand_read"], 16, 2.4, direct=False,
                              output='/mnt/s/"x".json')
    assert '--filename="/mnt/s/$(hostname).dat"' in cmd and r'--output="/mnt/s/\"x\".json"' in cmd
    assert "--name=rand_read --stonewall --rw=randread --bs=4k --time_based --runtime=2" in cmd
    assert cmd.count("--runtime") == 1 and "--direct=0" in cmd and "--size=16M" in cmd


def test_metadata_rate():
    rate = storage.parse_metadata(text("storage/metadata-rate.txt"))
    assert rate.files == 200
    assert rate.ops_per_s == pytest.approx(600 / (rate.create_s + rate.stat_s + rate.unlink_s))
    assert storage.parse_metadata("HPCV_META files=10 create_ns=1 stat_ns=1 unlink_ns=1 left=3") is None  # not all removed


# -- coherency, many writers --------------------------------------------------------------------

def test_visibility_lines():
    assert storage.parse_visibility("HPCV_SEEN ok ns=250000000 got=abc") == storage.Visibility(True, 0.25, "abc")
    seen = storage.parse_visibility(f"HPCV_SEEN timeout ns=5000000000 got={storage.ABSENT}")
    assert not seen.seen and seen.last == storage.ABSENT
    assert storage.parse_visibility("") is None


def test_written_problems_name_writers_and_checker():
    sha = "a" * 64
    reported = {"c1-0.1.dat": (sha, 1024), "c1-0.2.dat": (sha, 1024), "c2-1.1.dat": (sha, 1024),
                "c10-2.1.dat": (sha, 1024), "c10-2.2.dat": ("b" * 64, 1024)}
    found = {"c1-0.1.dat": sha, "c1-0.2.dat": sha, "c10-2.1.dat": sha, "c10-2.2.dat": "c" * 64}
    problems = storage.written_problems(reported, found, ["c1", "c2", "c10"], 2, "c3")
    assert problems == [
        "c2: 1 of its 2 writes did not complete",
        "c10: c10-2.2.dat reads back on c3 with different content (incomplete write?)",
        "c2: wrote c2-1.1.dat, but c3 does not see it",
    ]
    out = "HPCV_WROTE c1-0.1.dat " + sha + " 1048576\n"
    assert storage.parse_written(out) == {"c1-0.1.dat": (sha, 1048576)}
    assert storage.parse_sha256sum(f"{sha}  c1-0.1.dat\n{sha} *dir/c2-0.1.dat\n") == {"c1-0.1.dat": sha,
                                                                                     "c2-0.1.dat": sha}


# -- GlusterFS ------------------------------------------------------------------------------------

def test_gluster_healthy():
    peers = storage.parse_peer_status(text("storage/gluster-peer-status.xml"))
    bricks = storage.parse_volume_status(text("storage/gluster-volume-status.xml"))
    assert [(p.hostname, p.connected) for p in peers] == [("c2", True), ("c3", True)]
    assert [(b.host, b.online) for b in bricks] == [("c1", True), ("c2", True), ("c3", True)]
    assert all(b.pid for b in bricks) and bricks[0].volume == "shared"
    assert storage.gluster_problems("c1", peers, bricks, "shared", ["c1", "c2", "c3"]) == []
    assert len(storage.parse_volume_status(text("storage/gluster-volume-status-all.xml"))) == 3


def test_gluster_brick_down_names_the_brick_and_node():
    bricks = storage.parse_volume_status(text("storage/gluster-volume-status-brick-down.xml"))
    down = [b for b in bricks if not b.online]
    assert [(b.host, b.pid) for b in down] == [("c2", None)]
    problems = storage.gluster_problems("c1", [], bricks, "shared")
    assert problems == [f"brick c2:{down[0].path} of volume shared on c2 is offline"]


def test_gluster_detail_sizes_and_a_brick_nearly_full():
    bricks = storage.parse_volume_status(text("storage/gluster-volume-status-detail.xml"))
    assert [(b.host, b.size_total, b.size_free) for b in bricks][0] == ("c1", 270553174016, 243969708032)
    assert storage.gluster_problems("c1", [], bricks, "hpcv-proto", free_gib_min=1) == []
    full = dataclasses.replace(bricks[1], size_free=200 * storage.MIB, size_total=storage.GIB)
    assert storage.gluster_problems("c1", [], [bricks[0], full], "hpcv-proto", free_gib_min=1) == [
        f"brick c2:{full.path} of volume hpcv-proto on c2 has 0.20 GiB free of 1.00 GiB; the minimum is 1 GiB"]
    # without detail (no sizes) nothing is claimed about space
    plain = storage.parse_volume_status(text("storage/gluster-volume-status.xml"))
    assert plain[0].size_free is None and storage.gluster_problems("c1", [], plain, "shared", free_gib_min=1e9) == []


def test_gluster_peer_disconnected_and_missing_volume_and_missing_brick_host():
    peers = storage.parse_peer_status(text("storage/gluster-peer-status-one-disconnected.xml"))
    assert storage.gluster_problems("c1", peers, [], None) == [
        "peer c3 is not connected to c1 (state: Peer in Cluster)"]
    bricks = storage.parse_volume_status(text("storage/gluster-volume-status.xml"))
    assert "c4 serves no brick of volume shared" in storage.gluster_problems("c1", [], bricks, "shared", ["c4"])
    assert storage.gluster_problems("c1", [], [], "other") == ["volume other has no bricks (is it started?)"]
    with pytest.raises(storage.GlusterError, match="Volume nosuchvol does not exist"):
        storage.parse_volume_status(text("storage/gluster-volume-status-no-such-volume.xml"))
    with pytest.raises(storage.GlusterError, match="no gluster XML"):
        storage.parse_peer_status("Connection failed. Please check if gluster daemon is operational.")


# -- BeeGFS -----------------------------------------------------------------------------------------

def beegfs_report(**variants: str) -> storage.BeegfsReport:
    """The healthy recorded set, with ``variants`` (kind -> fixture name) swapped in."""
    files = {"mgmt": "listnodes-mgmt.txt", "meta": "listnodes-meta.txt", "storage": "listnodes-storage.txt",
             "targets_meta": "listtargets-meta-state.txt", "targets_storage": "listtargets-storage-state.txt",
             "df": "beegfs-df.txt", "servers": "beegfs-check-servers.txt", **variants}
    rep = storage.BeegfsReport()
    for kind in ("mgmt", "meta", "storage"):
        rep.nodes[kind] = storage.parse_listnodes(text(f"beegfs/{files[kind]}"))
    for kind in ("meta", "storage"):
        rep.targets[kind] = storage.parse_listtargets(text(f"beegfs/{files['targets_' + kind]}"))
    rep.space = storage.parse_beegfs_df(text(f"beegfs/{files['df']}"))
    rep.servers = storage.parse_check_servers(text(f"beegfs/{files['servers']}"))
    return rep


def problems(rep: storage.BeegfsReport) -> list[str]:
    return storage.beegfs_problems(rep, "ctl", ["ctl"], ["c1", "c2"], free_gib_min=1.0)


def test_beegfs_parsers_read_the_documented_formats():
    rep = beegfs_report()
    assert [(n.name, n.num_id, n.reachable) for n in rep.nodes["storage"]] == [("c1", 1, True), ("c2", 2, True)]
    assert [(t.target_id, t.reachability, t.consistency, t.node, t.node_id) for t in rep.targets["storage"]] == [
        (101, "Online", "Good", "c1", 1), (201, "Online", "Good", "c2", 2)]
    assert [(s.target_id, s.pool, s.free_gib) for s in rep.space["storage"]] == [(101, "normal", 2980.1),
                                                                                (201, "normal", 3011.7)]
    assert rep.space["meta"][0].total_gib == 447.1
    assert [n.name for n in rep.servers["Storage"]] == ["c1", "c2"]


def test_beegfs_healthy_has_no_problem():
    assert problems(beegfs_report()) == []


@pytest.mark.parametrize("variant, expected", [
    ({"targets_storage": "listtargets-storage-state-offline.txt"}, ["c2: storage target 201 is Offline"]),
    ({"targets_storage": "listtargets-storage-state-needs-resync.txt"},
     ["c1: storage target 101 is Needs-resync (consistency)"]),
    ({"df": "beegfs-df-target-nearly-full.txt"},
     ["c2: storage target 201 has 0.4 GiB free of 3725.3 (0%, pool emergency); the minimum is 1 GiB"]),
    ({"meta": "listnodes-meta-unreachable.txt", "servers": "beegfs-check-servers-meta-unreachable.txt"},
     ["ctl: meta service [ID: 1] is not reachable"]),
    ({"servers": "beegfs-check-servers-meta-unreachable.txt"},
     ["ctl: meta service [ID: 1] is UNREACHABLE (beegfs-check-servers)"]),
])
def test_beegfs_each_degraded_variant_is_caught_naming_node_and_target(variant, expected):
    assert problems(beegfs_report(**variant)) == expected


def test_beegfs_missing_service_and_unreadable_output():
    rep = beegfs_report()
    rep.nodes["storage"] = rep.nodes["storage"][:1]
    rep.missing.append("beegfs-df (exit 1)")
    assert problems(rep) == ["could not read beegfs-df (exit 1)",
                             "c2: no storage service registered with the management service"]


def test_listtargets_numeric_node_ids():
    out = "TargetID     Reachability  Consistency   NodeID\n     101  Probably-offline         Good        1\n"
    t = storage.parse_listtargets(out)[0]
    assert (t.reachability, t.node, t.node_id) == ("Probably-offline", "", 1)
    rep = storage.BeegfsReport(targets={"storage": [t]})
    assert storage.beegfs_problems(rep, "m", [], [], 0) == ["node ID 1: storage target 101 is Probably-offline"]
