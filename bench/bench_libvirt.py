"""How fast the libvirt provider builds its guest image and makes and removes a VM cluster.

    sudo .venv/bin/python bench/bench_libvirt.py                  # cached image, 1 ctl + 2 compute, 3 runs
    sudo .venv/bin/python bench/bench_libvirt.py --cold           # also a cold image build (temporary cache)
    sudo .venv/bin/python bench/bench_libvirt.py --compute 1 --runs 5 --json
    sudo .venv/bin/python bench/bench_libvirt.py --virtiofs --runs 1   # + fio on a virtio-fs share

Reports: the cold image build (debootstrap + packages + ext4 image + initramfs) and its size,
the cached lookup, and per run the time from nothing to every compute VM ``idle`` in sinfo
(with the phases of ``up()``: network, domains started, sshd on every VM, Slurm idle), an
SSH ``hostname`` round on every node, and the teardown. Prints medians.

With ``--virtiofs`` every compute VM mounts a host directory over virtio-fs (cache ``none``),
and fio's sequential 1 MiB write and read (``probes.storage.run_fio``, the L5 throughput
check's own call) run in the first compute VM on the share and then, with the same
parameters, on the host against the same directory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pytest_hpcvalidate.config.model import ClusterConfig  # noqa: E402
from pytest_hpcvalidate.probes import storage  # noqa: E402
from pytest_hpcvalidate.providers.libvirt import LibvirtCluster, image  # noqa: E402
from pytest_hpcvalidate.providers.libvirt.cleanup import cleanup_stale, leftovers  # noqa: E402

NAME = "lvbench"


SHARE = Path("/var/lib/hpcvalidate/virtiofs/lvbench")
SHARE_MOUNT = "/mnt/bench"


def model(compute: int, memory_mb: int, virtiofs: bool = False) -> ClusterConfig:
    group = {"names": f"c[1-{compute}]" if compute > 1 else "c1", "cpus": 1, "memory_mb": memory_mb}
    if virtiofs:
        group["virtio_fs_mounts"] = [{"tag": "bench", "host_path": str(SHARE), "mount_point": SHARE_MOUNT, "cache": "none"}]
    return ClusterConfig.model_validate({
        "name": NAME, "provider": "libvirt",
        "network": {"subnet": "10.235.40.0/24", "bridge": "hpcv-lvbench"},
        "controller": {"name": "ctl", "cpus": 1, "memory_mb": memory_mb},
        "compute": [group],
    })


def virtiofs_fio(cluster, size_mib: int) -> dict:
    """MiB/s of sequential write and read: in the first compute VM on the share, then on the
    host on the same directory (fio file removed after each)."""
    workloads = ["seq_write", "seq_read"]
    out = {}
    guest = cluster.compute[0]
    jobs, r = storage.run_fio(guest, f"{SHARE_MOUNT}/fio-bench", workloads, size_mib, 1.0, direct=False)
    if set(jobs) != set(workloads):
        raise SystemExit(f"fio in {guest.name} on the share failed: {r.describe()}")
    guest.run(f"rm -f {SHARE_MOUNT}/fio-bench", timeout=60)
    out["guest"] = {"seq_write": round(jobs["seq_write"].write_mibps, 1), "seq_read": round(jobs["seq_read"].read_mibps, 1)}
    cmd = storage.fio_command(str(SHARE / "fio-bench-host"), workloads, size_mib, 1.0, direct=False)
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=600)
    host = {j.name: j for j in storage.parse_fio_or_empty(proc.stdout)}
    (SHARE / "fio-bench-host").unlink(missing_ok=True)
    if set(host) != set(workloads):
        raise SystemExit(f"fio on the host failed: {proc.stderr[-500:]}")
    out["host"] = {"seq_write": round(host["seq_write"].write_mibps, 1), "seq_read": round(host["seq_read"].read_mibps, 1)}
    return out


def image_builds(cold: bool) -> dict:
    out: dict = {}
    if cold:
        tmp = Path(tempfile.mkdtemp(prefix="hpcv-bench-image-", dir="/var/tmp"))
        try:
            start = time.monotonic()
            img = image.ensure_image(image.ImageSpec(), tmp)
            out["cold_build_s"] = round(time.monotonic() - start, 1)
            out["cold_phases_s"] = img.manifest["timings_s"]
            out["image_mib"] = img.manifest["size_mib"]
            out["rootfs_used_mib"] = img.manifest["rootfs_used_mib"]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    image.ensure_image(image.ImageSpec())  # the default cache, built if needed
    start = time.monotonic()
    img = image.ensure_image(image.ImageSpec())
    out["cached_lookup_s"] = round(time.monotonic() - start, 2)
    out["image_key"] = img.key
    return out


def one_run(compute: int, memory_mb: int, fio_mib: int = 0) -> dict:
    cleanup_stale(cluster=NAME)
    engine = LibvirtCluster(model(compute, memory_mb, virtiofs=bool(fio_mib)))
    start = time.monotonic()
    cluster = engine.up()
    idle = time.monotonic() - start
    results = cluster.run_all("hostname", timeout=30)
    ssh = time.monotonic() - start
    assert all(r.ok and r.stdout.strip() == n for n, r in results.items()), results
    fio = virtiofs_fio(cluster, fio_mib) if fio_mib else None
    t = time.monotonic()
    engine.down()
    down = time.monotonic() - t
    left = leftovers(NAME)
    assert not left, left
    out = {"idle_s": round(idle, 2), "ssh_all_s": round(ssh, 2), "down_s": round(down, 2),
           "domain_type": engine.domain_type, "phases_s": engine.timings}
    if fio:
        out["virtiofs_fio_mibps"] = fio
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compute", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--memory-mb", type=int, default=512)
    ap.add_argument("--cold", action="store_true", help="also time a cold image build in a temporary cache")
    ap.add_argument("--virtiofs", action="store_true", help="share a host directory and run fio on it (guest vs host)")
    ap.add_argument("--fio-mib", type=int, default=128, help="fio file size with --virtiofs (default 128)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    report = {"image": image_builds(args.cold), "runs": []}
    for _ in range(args.runs):
        report["runs"].append(one_run(args.compute, args.memory_mb, args.fio_mib if args.virtiofs else 0))
    runs = report["runs"]
    report["median"] = {k: round(statistics.median(r[k] for r in runs), 2) for k in ("idle_s", "ssh_all_s", "down_s")}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"image: {report['image']}")
    for i, r in enumerate(runs, 1):
        print(f"run {i}: idle {r['idle_s']}s, ssh on all {r['ssh_all_s']}s, down {r['down_s']}s "
              f"({r['domain_type']}; phases {r['phases_s']})")
        if "virtiofs_fio_mibps" in r:
            print(f"  virtio-fs fio MiB/s (1 MiB blocks, {args.fio_mib} MiB file): {r['virtiofs_fio_mibps']}")
    print(f"median (1 ctl + {args.compute} compute): {report['median']}")


if __name__ == "__main__":
    main()
