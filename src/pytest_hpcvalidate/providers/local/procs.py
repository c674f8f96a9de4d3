"""Finding and ending a local cluster's processes.

A process belongs to a cluster when it lives in one of the cluster's network namespaces,
sits in one of its cgroup subtrees, or was recorded in the state file (pid plus start time,
so a recycled pid is never signalled). Slurm's job steps (slurmstepd and the tasks) and
sshd's sessions are found the same way: they inherit the node's namespaces and cgroups.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from .state import proc_start_time, same_process


def all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
        return data[data.rindex(b")") + 2 : data.rindex(b")") + 3] in (b"Z", b"X")
    except (OSError, ValueError):
        return True


def alive(pid: int) -> bool:
    return proc_start_time(pid) is not None and not is_zombie(pid)


def in_netns(inodes: set[int], pids: Iterable[int] | None = None) -> set[int]:
    """Pids whose network namespace is one of ``inodes``."""
    if not inodes:
        return set()
    found = set()
    me = os.getpid()
    for pid in pids if pids is not None else all_pids():
        if pid == me:
            continue
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino in inodes:
                found.add(pid)
        except OSError:
            continue
    return found


def in_cgroup_where(match: Callable[[str], bool], pids: Iterable[int] | None = None) -> set[int]:
    """Pids with a cgroup path (any hierarchy's, from /proc/<pid>/cgroup) for which ``match`` holds."""
    found = set()
    for pid in pids if pids is not None else all_pids():
        try:
            with open(f"/proc/{pid}/cgroup") as fh:
                text = fh.read()
        except OSError:
            continue
        if any(match(line.split(":", 2)[-1]) for line in text.splitlines()):
            found.add(pid)
    return found


def in_cgroup_named(names: Iterable[str], pids: Iterable[int] | None = None) -> set[int]:
    """Pids whose /proc/<pid>/cgroup mentions one of the subtree ``names`` as a path component."""
    needles = tuple(f"/{n}" for n in names)
    if not needles:
        return set()
    return in_cgroup_where(lambda path: any(path == n or path.startswith(n + "/") for n in needles), pids)


def in_mount_ns_marked(marker: str, pids: Iterable[int] | None = None) -> set[int]:
    """Pids in another mount namespace whose /etc/hosts starts with ``marker`` (a node's)."""
    try:
        mine = os.stat("/proc/self/ns/mnt").st_ino
    except OSError:
        return set()
    want = marker.encode()
    found = set()
    seen: dict[int, bool] = {}
    for pid in pids if pids is not None else all_pids():
        try:
            ino = os.stat(f"/proc/{pid}/ns/mnt").st_ino
        except OSError:
            continue
        if ino == mine:
            continue
        if ino not in seen:
            try:
                with open(f"/proc/{pid}/root/etc/hosts", "rb") as fh:
                    seen[ino] = fh.readline().rstrip(b"\n") == want
            except OSError:
                seen[ino] = False
        if seen[ino]:
            found.add(pid)
    return found


def with_cmdline_containing(text: str, pids: Iterable[int] | None = None) -> dict[int, str]:
    """Pids whose command line contains ``text`` (e.g. the cluster's work directory)."""
    needle = text.encode()
    found = {}
    me = os.getpid()
    for pid in pids if pids is not None else all_pids():
        if pid == me:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue
        if needle in raw:
            found[pid] = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


def verified(records: Iterable[dict]) -> set[int]:
    """Recorded processes that are still the process recorded (pid and start time match)."""
    return {r["pid"] for r in records if r.get("pid") and same_process(r["pid"], r.get("start"))}


def describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmd = ""
    if not cmd:
        try:
            cmd = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            cmd = "?"
    return f"pid {pid} ({cmd[:120]})"


def kill(pids: Iterable[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def reap(pids: Iterable[int]) -> None:
    """Collect exit statuses of our own children among ``pids`` (no zombies left behind)."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        except OSError:
            pass


def wait_gone(pids: Iterable[int], timeout: float) -> set[int]:
    """Wait until none of ``pids`` is alive (zombies count as gone); returns the survivors."""
    pending = set(pids)
    deadline = time.monotonic() + timeout
    delay = 0.002
    while pending:
        reap(pending)
        pending = {p for p in pending if alive(p)}
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return pending
