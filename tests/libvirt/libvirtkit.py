"""Helpers for the tests that boot real VMs: why they cannot run here, and test configs.

Test clusters take a name and a free 10.234.x.0/24 subnet from ``clusterkit.unique`` (the
same allocator the local-cluster tests use, so the two never collide).
"""

from __future__ import annotations

import os
import shutil

import clusterkit
import yaml

#: what booting a guest needs on the host, and the Debian package that provides it
HOST_TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "libvirtd": "libvirt-daemon-system",
    "virtlogd": "libvirt-daemon-system",
    "debootstrap": "debootstrap",
    "mkfs.ext4": "e2fsprogs",
    "depmod": "kmod",
    "/bin/busybox": "busybox-static",
    "/usr/lib/qemu/virtiofsd": "qemu-system-common",
}
#: software-emulated guests on 2 cores shared with other test runs: pings of 1-25 ms (p99 up to
#: ~150 ms) and iperf3 from 0.04 to 0.4 Gbit/s were measured here at load averages of 5-11.
#: These tests prove the suites run over SSH on VMs; that each check goes red is proven on the
#: local provider (tests/faults/) and for thresholds by the report tests.
TCG_THRESHOLDS = {"latency_p50_ms_max": 50.0, "latency_p99_ms_max": 500.0, "bandwidth_gbps_min": 0.005}
#: fio and metadata floors for a virtio-fs share under TCG on a loaded 2-core host: an order of
#: magnitude below what was measured unloaded (seq 400-1400 MiB/s, 5800 IOPS, 580 metadata ops/s)
TCG_STORAGE_THRESHOLDS = {"seq_write_mibps_min": 10, "seq_read_mibps_min": 10, "rand_read_iops_min": 100,
                          "metadata_ops_min": 10, "free_space_gib_min": 0.1, "coherency_s_max": 10}
#: the smallest guest that runs sshd, munge and slurmd/slurmctld with room for jobs
GUEST_MEMORY_MB = 384


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root: libvirt's system instance, a bridge, QEMU"
    missing = sorted({pkg for tool, pkg in HOST_TOOLS.items()
                      if not (os.access(tool, os.X_OK) if tool.startswith("/") else shutil.which(tool))})
    if missing:
        return "libvirt/QEMU are not installed here: apt-get install -y " + " ".join(missing) + " (setup.sh does)"
    try:
        import libvirt  # noqa: F401
    except ImportError:
        return "libvirt-python is not installed (apt-get install libvirt-dev pkg-config; pip install -e '.[libvirt]')"
    return None


def config(tag: str, **extra) -> tuple[str, dict]:
    """(name, config dict) of a 1 controller + 1 compute libvirt cluster with TCG thresholds."""
    name, octet = clusterkit.unique(tag)
    doc = {
        "name": name,
        "provider": "libvirt",
        "network": {"subnet": f"10.234.{octet}.0/24", "bridge": f"hpcv-{name}"[:15]},
        "controller": {"name": "ctl", "cpus": 1, "memory_mb": GUEST_MEMORY_MB},
        "compute": [{"names": "c1", "cpus": 1, "memory_mb": GUEST_MEMORY_MB}],
        "thresholds": dict(TCG_THRESHOLDS),
        # the burst check's tasks: one VM of one CPU under TCG runs a short job in ~4 s
        "slurm": {"burst_jobs": 4},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key].update(value)
        else:
            doc[key] = value
    return name, doc


def write_config(path, doc: dict):
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def leftovers(name: str) -> list[str]:
    """What of libvirt cluster ``name`` is still there (domains, networks, processes, files)."""
    from pytest_hpcvalidate.providers.libvirt.cleanup import leftovers as left

    return left(name)


def remove(name: str) -> None:
    """Remove every trace of libvirt cluster ``name`` (no-op when it is already gone)."""
    from pytest_hpcvalidate.providers.libvirt.cleanup import cleanup_stale

    cleanup_stale(cluster=name)
