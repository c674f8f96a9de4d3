"""How fast the local provider makes and removes a real Slurm cluster on this machine.

    sudo .venv/bin/python bench/bench_local_provision.py            # 1 controller + 3 compute, 5 runs
    sudo .venv/bin/python bench/bench_local_provision.py --compute 32 --runs 1
    sudo .venv/bin/python bench/bench_local_provision.py --json

Per run: time from nothing to every compute node ``idle`` in sinfo (what ``up()`` waits for,
with every sshd answering), then to every node having run ``hostname`` over SSH (strict
host keys, concurrently); the teardown time; the memory of the cluster's processes (sum of
RSS of everything in its namespaces and cgroups). Prints medians, and the phases of ``up()``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pytest_hpcvalidate.providers.local import cgroups, netns, procs  # noqa: E402
from pytest_hpcvalidate.providers.local.cleanup import cleanup_stale, leftovers  # noqa: E402
from pytest_hpcvalidate.providers.local.engine import LocalCluster  # noqa: E402
from pytest_hpcvalidate.providers.local.naming import netns_name  # noqa: E402
from pytest_hpcvalidate.providers.local.spec import LocalSpec, NodeSpec, PartitionSpec  # noqa: E402

STATE_ROOT = Path(os.environ.get("HPCV_STATE_ROOT", "/var/lib/hpcvalidate/clusters"))


def make_spec(compute: int, name: str) -> LocalSpec:
    if compute > 200:
        raise SystemExit("at most 200 compute nodes fit the bench's /24")
    base = "10.235.0"
    nodes = [NodeSpec("ctl", "controller", f"{base}.10", cpus=1, memory_mb=512)]
    nodes += [NodeSpec(f"c{i}", "compute", f"{base}.{10 + i}", cpus=2, memory_mb=1024,
                       gpus=2 if i == 1 else 0, gpu_type="sim") for i in range(1, compute + 1)]
    wd = STATE_ROOT / name
    return LocalSpec(cluster=name, subnet=f"{base}.0/24", bridge="hpcv-bench", bridge_address=f"{base}.1", mtu=1500,
                     nodes=nodes, partitions=[PartitionSpec("debug", [n.name for n in nodes[1:]], True, "1:00:00")],
                     work_dir=wd, shared_dir=wd / "shared")


def memory_mib(spec: LocalSpec, engine: LocalCluster) -> tuple[float, float, int]:
    """Sum of RSS and of PSS (shared pages split between sharers) of every process in the
    cluster's namespaces and cgroups, and their count."""
    inodes = {netns.netns_inode(netns_name(spec.cluster, n.name)) for n in spec.nodes} - {None}
    pids = procs.in_netns(inodes)
    for cg in engine._cg.values():
        for p in cg.paths:
            pids |= cgroups.pids_in(p)
    rss_kb = pss_kb = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss_kb += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss_kb += int(line.split()[1])
        except OSError:
            continue
    return rss_kb / 1024, pss_kb / 1024, len(pids)


def one_run(spec: LocalSpec) -> dict:
    engine = LocalCluster(spec)
    t0 = time.monotonic()
    cluster = engine.up()
    t_up = time.monotonic() - t0
    with ThreadPoolExecutor(max_workers=min(32, len(cluster.nodes))) as pool:
        results = list(pool.map(lambda n: n.ssh.run("hostname", timeout=60), cluster.nodes))
    t_ssh = time.monotonic() - t0
    bad = [r.describe() for r, n in zip(results, cluster.nodes, strict=True) if not r.ok or r.stdout.strip() != n.name]
    if bad:
        engine.down()
        raise SystemExit(f"SSH check failed: {bad[:3]}")
    rss, pss, nprocs = memory_mib(spec, engine)
    cluster.close()
    t1 = time.monotonic()
    engine.down()
    t_down = time.monotonic() - t1
    left = leftovers(spec.cluster, STATE_ROOT)
    if left:
        raise SystemExit(f"teardown left: {left}")
    return {"idle_s": engine.timings["idle"], "up_s": t_up, "ssh_all_s": t_ssh, "down_s": t_down,
            "rss_mib": rss, "pss_mib": pss, "processes": nprocs,
            "phases": {k: v for k, v in engine.timings.items() if k != "down"}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--compute", type=int, default=3, help="compute nodes (plus one controller); default 3")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("run as root: the local provider creates namespaces, a bridge and cgroups")
    name = f"bench{os.getpid() % 100000}"
    spec = make_spec(args.compute, name)
    runs = []
    try:
        for _ in range(args.runs):
            runs.append(one_run(spec))
    finally:
        cleanup_stale(STATE_ROOT, cluster=name)
    keys = ("idle_s", "up_s", "ssh_all_s", "down_s", "rss_mib", "pss_mib")
    med = {k: statistics.median(r[k] for r in runs) for k in keys}
    phases = {k: statistics.median(r["phases"][k] for r in runs) for k in runs[0]["phases"]}
    report = {
        "nodes": len(spec.nodes), "compute": args.compute, "runs": args.runs, "cpus": os.cpu_count(),
        "median": {k: round(v, 3) for k, v in med.items()},
        "phases_median_s": {k: round(v, 3) for k, v in phases.items()},
        "runs_detail": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items() if k != "phases"}
                        for r in runs],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"local provider: 1 controller + {args.compute} compute, {args.runs} runs, "
                        f"{os.cpu_count()} cores")
    for col in ("run", "all compute idle (s)", "up() returned (s)", "+ SSH on every node (s)", "teardown (s)",
                "RSS MiB", "PSS MiB", "processes"):
        table.add_column(col, justify="right")
    for i, r in enumerate(runs, 1):
        table.add_row(str(i), f"{r['idle_s']:.3f}", f"{r['up_s']:.3f}", f"{r['ssh_all_s']:.3f}", f"{r['down_s']:.3f}",
                      f"{r['rss_mib']:.0f}", f"{r['pss_mib']:.0f}", str(r["processes"]))
    table.add_row("median", f"{med['idle_s']:.3f}", f"{med['up_s']:.3f}", f"{med['ssh_all_s']:.3f}",
                  f"{med['down_s']:.3f}", f"{med['rss_mib']:.0f}", f"{med['pss_mib']:.0f}", "", style="bold")
    console = Console()
    console.print(table)
    console.print("phases of up() (median, seconds since start): "
                  + ", ".join(f"{k} {v:.3f}" for k, v in phases.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
