"""The local provider's GlusterFS, measured: how long it takes to start glusterd on every
storage node, create and start the volume, and FUSE-mount it on every node; then the fio
figures of the L5 checks next to fio run by hand with the same parameters on the same node.

    sudo .venv/bin/python bench/bench_storage.py                    # 3 compute nodes, 3 runs
    sudo .venv/bin/python bench/bench_storage.py --compute 8 --runs 1 --size-mib 128
    sudo .venv/bin/python bench/bench_storage.py --json

Every compute node serves one brick and mounts the volume (the controller mounts it too).
"By hand" is one ``nsenter … fio`` per workload, as an operator would type it; the project's
figure comes from ``probes.storage.run_fio`` (one fio process, the workloads stonewalled)
through the node's transport. Both are medians over ``--repeat`` alternating rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pytest_hpcvalidate.probes import storage  # noqa: E402
from pytest_hpcvalidate.providers.local.cleanup import leftovers  # noqa: E402
from pytest_hpcvalidate.providers.local.engine import LocalCluster  # noqa: E402
from pytest_hpcvalidate.providers.local.spec import LocalSpec, NodeSpec, PartitionSpec  # noqa: E402

STATE_ROOT = Path(os.environ.get("HPCV_STATE_ROOT", "/var/lib/hpcvalidate/clusters"))
MOUNT = "/mnt/hpcv-bench"
WORKLOADS = ["seq_write", "seq_read", "rand_read"]


def make_spec(compute: int, name: str) -> LocalSpec:
    if compute > 200:
        raise SystemExit("at most 200 compute nodes fit the bench's /24")
    base = "10.236.0"
    nodes = [NodeSpec("ctl", "controller", f"{base}.10", cpus=1, memory_mb=512)]
    nodes += [NodeSpec(f"c{i}", "compute", f"{base}.{10 + i}", cpus=1, memory_mb=1024) for i in range(1, compute + 1)]
    wd = STATE_ROOT / name
    storage_entry = {"kind": "glusterfs", "mount_point": MOUNT, "nodes": ",".join(n.name for n in nodes),
                     "storage_nodes": [n.name for n in nodes[1:]], "source": None}
    return LocalSpec(cluster=name, subnet=f"{base}.0/24", bridge="hpcv-bstor", bridge_address=f"{base}.1", mtu=1500,
                     nodes=nodes, partitions=[PartitionSpec("debug", [n.name for n in nodes[1:]], True, "1:00:00")],
                     work_dir=wd, shared_dir=wd / "shared", extra={"storage": [storage_entry]})


def by_hand(anchor_pid: int, path: str, workload: str, size_mib: int, runtime_s: float) -> float:
    """fio as an operator types it, one workload per run: MiB/s (IOPS for rand_read)."""
    opts = {"seq_write": ["--rw=write", "--bs=1M", "--end_fsync=1"], "seq_read": ["--rw=read", "--bs=1M"],
            "rand_read": ["--rw=randread", "--bs=4k", "--time_based", f"--runtime={int(runtime_s)}"]}[workload]
    out = subprocess.run(["nsenter", "-t", str(anchor_pid), "-n", "-m", "-u", "--", "fio", f"--name={workload}",
                          f"--filename={path}", f"--size={size_mib}M", "--direct=1", "--ioengine=psync",
                          "--output-format=json", *opts], capture_output=True, text=True, check=True).stdout
    job = json.loads(out)["jobs"][0]
    side = job["write"] if workload == "seq_write" else job["read"]
    return side["iops"] if workload == "rand_read" else side["bw_bytes"] / storage.MIB


def project(node, path: str, size_mib: int, runtime_s: float) -> dict[str, float]:
    jobs, r = storage.run_fio(node, path, WORKLOADS, size_mib, runtime_s)
    if len(jobs) != len(WORKLOADS):
        raise SystemExit(f"fio through the probe failed: {r.describe()}")
    return {"seq_write": jobs["seq_write"].write_mibps, "seq_read": jobs["seq_read"].read_mibps,
            "rand_read": jobs["rand_read"].read_iops}


def one_run(spec: LocalSpec, size_mib: int, runtime_s: float, repeat: int) -> dict:
    engine = LocalCluster(spec)
    t0 = time.monotonic()
    cluster = engine.up()
    t_up = time.monotonic() - t0
    try:
        node = cluster.node("ctl")  # no brick: its I/O crosses the network like a client's
        path = f"{MOUNT}/bench-fio"
        ours: dict[str, list[float]] = {w: [] for w in WORKLOADS}
        hand: dict[str, list[float]] = {w: [] for w in WORKLOADS}
        for i in range(repeat):  # alternating which goes first: neither gets the warmer caches
            for turn in ((0, 1) if i % 2 == 0 else (1, 0)):
                if turn == 0:
                    for w, v in project(node, path, size_mib, runtime_s).items():
                        ours[w].append(v)
                else:
                    for w in WORKLOADS:
                        hand[w].append(by_hand(engine.anchors["ctl"].pid, path, w, size_mib, runtime_s))
                node.run(f"rm -f {path}", timeout=60)
        timings = dict(engine.timings)
    finally:
        t1 = time.monotonic()
        engine.down()
        t_down = time.monotonic() - t1
    left = leftovers(spec.cluster)
    if left:
        raise SystemExit(f"teardown left: {left}")
    return {"up_s": t_up, "down_s": t_down, "glusterd_s": timings.get("glusterfs_glusterd"),
            "volume_s": timings.get("glusterfs_volumes"), "mount_s": timings.get("glusterfs_mounts"),
            "addon_s": timings.get("addon_glusterfs"),
            "project": {w: statistics.median(v) for w, v in ours.items()},
            "by_hand": {w: statistics.median(v) for w, v in hand.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--compute", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--runtime-s", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=3, help="alternating fio rounds per run")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the local provider creates namespaces, a bridge, cgroups and mounts")
    spec = make_spec(args.compute, f"benchstor{os.getpid() % 10000}")
    runs = [one_run(spec, args.size_mib, args.runtime_s, args.repeat) for _ in range(args.runs)]

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    result = {
        "compute": args.compute, "runs": args.runs, "size_mib": args.size_mib,
        "cluster_up_s": med("up_s"), "glusterd_and_peers_s": med("glusterd_s"), "volume_create_start_s": med("volume_s"),
        "mount_all_nodes_s": med("mount_s"), "glusterfs_total_s": med("addon_s"), "down_s": med("down_s"),
        "fio": {w: {"project": statistics.median(r["project"][w] for r in runs),
                    "by_hand": statistics.median(r["by_hand"][w] for r in runs)} for w in WORKLOADS},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    n = args.compute + 1
    print(f"GlusterFS on the local provider: {args.compute} bricks, mounted on {n} nodes, median of {args.runs} runs")
    print(f"  {'cluster up (Slurm + GlusterFS)':<38} {result['cluster_up_s']:7.2f} s")
    print(f"  {'  glusterd x' + str(args.compute) + ' + peer probe':<38} {result['glusterd_and_peers_s']:7.2f} s")
    print(f"  {'  volume create + start':<38} {result['volume_create_start_s']:7.2f} s")
    print(f"  {'  FUSE mount on ' + str(n) + ' nodes':<38} {result['mount_all_nodes_s']:7.2f} s")
    print(f"  {'teardown':<38} {result['down_s']:7.2f} s")
    print(f"fio on ctl through the mount ({args.size_mib} MiB file, O_DIRECT): project vs by hand")
    for w, unit in (("seq_write", "MiB/s"), ("seq_read", "MiB/s"), ("rand_read", "IOPS")):
        p, h = result["fio"][w]["project"], result["fio"][w]["by_hand"]
        print(f"  {w:<12} {p:10.1f} {h:10.1f} {unit:<6} {100 * (p - h) / h:+6.1f} %")


if __name__ == "__main__":
    main()
