"""Host-wide kernel limits a local cluster needs raised: the IPv4 neighbour (ARP) table.

The kernel keeps one neighbour table for all network namespaces, and its limits
(``net.ipv4.neigh.default.gc_thresh1..3``, Debian's defaults 128/512/1024) count the
entries of every namespace together. A cluster of N nodes whose nodes all talk to each
other (the all-pairs reachability check does) needs about N² entries: at 1+32 nodes that is
past 1024, the kernel refuses new entries ("neighbour: arp_cache: neighbor table
overflow!"), ``ping`` gets ENOBUFS for every echo request and the check reports 100% loss
on a network that is fine.

So ``up()`` raises the limits to what the clusters on this host need, and teardown puts them
back. Several clusters may be up at once (the tests run two workers): a registry file
(``/run/hpcvalidate/neigh-limits.json``, under a lock) holds the values found before the first
raise and what each live cluster (by work directory) needs. The limits are only ever raised
(never below what the host had), written only when they are too low, and restored when the
last cluster is gone, unless someone else changed them meanwhile. A cluster whose work
directory is gone (crashed and cleaned up by hand) no longer counts.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path

SYSCTL_DIR = Path("/proc/sys/net/ipv4/neigh/default")
REGISTRY = Path("/run/hpcvalidate/neigh-limits.json")
KEYS = ("gc_thresh1", "gc_thresh2", "gc_thresh3")
#: entries kept free for the host's own neighbours and anything else on it
RESERVE = 512


def neighbours_needed(nodes: int) -> int:
    """Neighbour entries a cluster of ``nodes`` needs when every node and the host (on the
    bridge) talk to every node."""
    return nodes * nodes + nodes


def read_limits(sysctl_dir: Path) -> dict[str, int]:
    return {k: int((sysctl_dir / k).read_text().split()[0]) for k in KEYS}


def _write(sysctl_dir: Path, values: dict[str, int]) -> None:
    # thresh3 first when raising: the kernel does not insist on the order, but a reader
    # between the writes should never see thresh2 above thresh3
    for k in sorted(values, key=KEYS.index, reverse=True):
        (sysctl_dir / k).write_text(f"{values[k]}\n")


@contextmanager
def _registry(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        data.setdefault("clusters", {})
        yield data
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
    finally:
        os.close(fd)


def wanted(original: dict[str, int], total_need: int) -> dict[str, int]:
    """The limits for ``total_need`` entries: the point where the kernel starts pruning hard
    (thresh2) at twice the need, the hard limit (thresh3) a reserve above that; never below
    ``original``. With thresh2 at the need itself, the forced pruning near it dropped the
    first echo request of one pair in thirty while its neighbour entry was being resolved
    (1+32 nodes, all pairs at once)."""
    soft = 2 * total_need
    return {"gc_thresh1": original["gc_thresh1"],
            "gc_thresh2": max(original["gc_thresh2"], soft),
            "gc_thresh3": max(original["gc_thresh3"], soft + RESERVE)}


def _apply(data: dict, sysctl_dir: Path) -> dict[str, int] | None:
    """Bring the limits to what ``data``'s clusters need; returns what was written, if any."""
    original = data["original"]
    target = wanted(original, sum(data["clusters"].values()))
    current = read_limits(sysctl_dir)
    if not data["clusters"]:  # the last one went: back to the host's values, if still ours
        if data.get("set") and current == data["set"] and current != original:
            _write(sysctl_dir, original)
            data.pop("set", None)
            return original
        data.pop("set", None)
        return None
    raise_to = {k: v for k, v in target.items() if current[k] < v}
    if not raise_to:
        return None
    _write(sysctl_dir, raise_to)
    data["set"] = read_limits(sysctl_dir)
    return raise_to


def _prune(data: dict, keep: str) -> None:
    for wd in list(data["clusters"]):
        if wd != keep and not Path(wd).exists():
            del data["clusters"][wd]


def reserve(work_dir: Path, nodes: int, sysctl_dir: Path = SYSCTL_DIR,
            registry: Path = REGISTRY) -> dict[str, int] | None:
    """Count ``work_dir``'s cluster of ``nodes`` in and raise the limits if they are too low.
    Returns the values written (None: they were high enough). Raises OSError when they are
    too low and cannot be written (a read-only /proc/sys)."""
    with _registry(registry) as data:
        if "original" not in data or not data["clusters"]:
            data["original"] = read_limits(sysctl_dir)
        _prune(data, str(work_dir))
        data["clusters"][str(work_dir)] = neighbours_needed(nodes)
        return _apply(data, sysctl_dir)


def release(work_dir: Path, sysctl_dir: Path = SYSCTL_DIR, registry: Path = REGISTRY) -> dict[str, int] | None:
    """Count ``work_dir``'s cluster out; when no cluster is left, restore the host's limits
    (unless changed by someone else since). Returns the values written, if any."""
    if not registry.exists():
        return None
    with _registry(registry) as data:
        data["clusters"].pop(str(work_dir), None)
        _prune(data, "")
        if "original" not in data:
            return None
        return _apply(data, sysctl_dir)


def counted(work_dir: Path, registry: Path = REGISTRY) -> bool:
    """Whether the registry still counts ``work_dir``'s cluster in (a leftover after teardown;
    one whose work directory is gone no longer counts)."""
    try:
        listed = str(work_dir) in json.loads(registry.read_text()).get("clusters", {})
    except (OSError, ValueError):
        return False
    return listed and Path(work_dir).exists()
