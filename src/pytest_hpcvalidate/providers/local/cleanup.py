"""Undoing a local cluster: the one teardown path used by ``down()``, by a failed ``up()``
and by ``python -m pytest_hpcvalidate cleanup`` after a crash.

Order: end every process (recorded pids whose start time still matches, everything in the
cluster's network namespaces, everything in its cgroup subtrees), unmount what is mounted
under the work directory, remove veths, namespaces and the bridge, remove the cgroup
subtrees depth-first, remove the work directory. Every step runs even when an earlier one
failed; the problems come back as a list of one-line strings. Running it twice is harmless.

:func:`leftovers` reports anything of a cluster still on the machine (the tests use it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from . import cgroups, hostlimits, netns, procs
from .naming import PREFIX, link_alias, netns_name
from .sshconf import hosts_marker
from .state import STATE_FILE, State, state_files, sweep_recorded

#: how long teardown keeps killing what reappears (forks racing the first SIGKILL)
KILL_TIMEOUT_S = 8.0


def _default_root() -> Path:
    from .provider import STATE_ROOT

    return STATE_ROOT


# -- mounts ----------------------------------------------------------------------------------

def _unescape(path: str) -> str:
    return path.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` in this mount namespace, deepest first."""
    base = str(Path(path))
    found = []
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                mp = _unescape(line.split()[4])
                if mp == base or mp.startswith(base.rstrip("/") + "/"):
                    found.append(mp)
    except OSError:
        pass
    return sorted(set(found), key=lambda m: m.count("/"), reverse=True)


def _umount(mp: str) -> str | None:
    proc = subprocess.run(["umount", "-l", mp], capture_output=True, text=True)
    return None if proc.returncode == 0 else f"umount {mp}: {proc.stderr.strip()}"


# -- the teardown ----------------------------------------------------------------------------

def _cluster_pids(state: State, inodes: set[int]) -> set[int]:
    pids = procs.verified(state.of_kind("process"))
    every = procs.all_pids()
    pids |= procs.in_netns(inodes, every)
    pids |= procs.in_mount_ns_marked(hosts_marker(state.cluster), every)
    for r in state.of_kind("cgroup"):
        pids |= cgroups.pids_in(Path(r["path"]))
    pids.discard(os.getpid())
    return {p for p in pids if procs.alive(p)}


def stop_processes(state: State, timeout: float = KILL_TIMEOUT_S) -> list[str]:
    inodes = {i for i in (netns.netns_inode(r["name"]) for r in state.of_kind("netns")) if i is not None}
    cg_paths = [Path(r["path"]) for r in state.of_kind("cgroup")]
    deadline = time.monotonic() + timeout
    killed: set[int] = set()
    while True:
        for p in cg_paths:
            if p.parent == cgroups.CGROUP_ROOT:  # v2 subtree: one write kills it all
                cgroups.kill_v2(p)
        pids = _cluster_pids(state, inodes)
        if not pids:
            break
        procs.kill(pids)
        killed |= pids
        for p in cg_paths:  # a frozen task ignores SIGKILL until thawed
            if p.parent.name == "freezer" or (p / "freezer.state").exists():
                cgroups.thaw(p)
        left = procs.wait_gone(pids, max(0.0, min(1.0, deadline - time.monotonic())))
        if time.monotonic() >= deadline:
            if left:
                return [f"process still alive after SIGKILL: {procs.describe(p)}" for p in sorted(left)]
            break
    procs.reap(killed)
    return []


def remove_network(state: State) -> list[str]:
    veths = [r["name"] for r in state.of_kind("veth")]
    spaces = [r["name"] for r in state.of_kind("netns")]
    bridge = None
    for r in state.of_kind("bridge"):
        link = netns.link(r["name"])
        if link is not None and link.get("ifalias") not in (None, link_alias(state.cluster)):
            # the name is taken by something else now: never delete what is not ours
            continue
        bridge = r["name"]
    lines = netns.delete_lines(veths, spaces, bridge)
    if not lines:
        return []
    proc = netns.ip_batch(lines, force=True)
    errors = []
    if proc.returncode != 0:
        errors.append(f"ip: {proc.stderr.strip()[-400:]}")
    still = set(spaces) & netns.list_netns()
    errors += [f"network namespace {ns} still exists" for ns in sorted(still)]
    return errors


def remove_cgroups(state: State) -> list[str]:
    errors: list[str] = []
    for r in state.of_kind("cgroup"):
        errors += cgroups.remove_tree(Path(r["path"]))
    return errors


def remove_mounts(state: State) -> list[str]:
    errors = []
    paths = {str(state.work_dir)} | {r["path"] for r in state.of_kind("mount")}
    for base in paths:
        for mp in mounts_under(Path(base)):
            err = _umount(mp)
            if err:
                errors.append(err)
    return errors


def remove_work_dir(state: State) -> list[str]:
    errors = []
    for r in [*state.of_kind("dir"), *state.of_kind("workdir")]:
        path = Path(r["path"])
        if not path.exists():
            continue
        if mounts_under(path):
            errors.append(f"not removing {path}: something is still mounted under it")
            continue
        try:
            shutil.rmtree(path)
        except OSError as exc:
            errors.append(f"removing {path}: {exc}")
    return errors


def teardown(state: State) -> list[str]:
    """Undo everything ``state`` records; returns the problems (empty when all went)."""
    errors: list[str] = []
    for step in (stop_processes, remove_mounts, remove_network, remove_cgroups, remove_addon_records,
                 release_host_limits):
        try:
            errors += step(state)
        except Exception as exc:  # keep going: every later step still has work to do
            errors.append(f"{step.__name__}: {exc!r}")
    return finish_teardown(state, errors)


def remove_addon_records(state: State) -> list[str]:
    """What addons made on the host and recorded (container image mount points)."""
    from .addons import undo_recorded_all  # the addons import the provider's modules

    return undo_recorded_all(state)


def release_host_limits(state: State) -> list[str]:
    """Count the cluster out of the host's raised neighbour-table limits (restored when it
    was the last)."""
    errors = []
    for r in state.of_kind("neigh_limit"):
        try:
            hostlimits.release(state.work_dir, registry=Path(r["registry"]))
        except OSError as exc:
            errors.append(f"restoring the neighbour-table limits ({r['registry']}): {exc}")
    return errors


def finish_teardown(state: State, errors: list[str]) -> list[str]:
    """The last step of any provider's teardown: with problems, record them in the state and
    keep the work directory (its state file is what a retry needs); without, remove the
    recorded directories and the work directory."""
    if errors:
        try:
            state.set("teardown_errors", errors)
        except OSError:
            pass
        return errors
    try:
        return remove_work_dir(state)
    except Exception as exc:
        return [f"remove_work_dir: {exc!r}"]


# -- crashed runs ------------------------------------------------------------------------------

def _other_clusters_names(state_root: Path, cluster: str) -> set[str]:
    """Exact netns/cgroup names recorded by *other* clusters (a prefix may match them)."""
    names: set[str] = set()
    for path in state_files(state_root):
        try:
            st = State.load(path)
        except (OSError, ValueError):
            continue
        if st.cluster == cluster:
            continue
        names |= {r["name"] for r in st.of_kind("netns")}
        names |= {Path(r["path"]).name for r in st.of_kind("cgroup")}
    return names


def _ours(name: str, cluster: str, others: set[str]) -> bool:
    return name.startswith(netns_name(cluster, "")) and name not in others


def swept_state(cluster: str, state_root: Path, work_dir: Path | None = None) -> State:
    """A state built from what the machine shows for ``cluster`` (no or partial state file):
    namespaces and cgroups named after it, links carrying its alias, and its work directory
    (``work_dir``, by default ``<state_root>/<cluster>``)."""
    others = _other_clusters_names(state_root, cluster)
    resources: list[dict] = []
    resources += [{"kind": "netns", "name": n} for n in sorted(netns.list_netns()) if _ours(n, cluster, others)]
    alias = link_alias(cluster)
    for link in netns._links_or_empty():
        if link.get("ifalias") == alias:
            kind = "veth" if "master" in link else "bridge"  # a veth's host side sits on the bridge
            resources.append({"kind": kind, "name": link["ifname"]})
    resources += [{"kind": "cgroup", "path": str(p)} for p in cgroups.existing(cluster)
                  if _ours(p.name, cluster, others)]
    work_dir = Path(work_dir) if work_dir is not None else Path(state_root) / cluster
    if hostlimits.counted(work_dir):
        resources.append({"kind": "neigh_limit", "registry": str(hostlimits.REGISTRY)})
    if work_dir.exists():
        resources.append({"kind": "workdir", "path": str(work_dir)})
    return State(work_dir / STATE_FILE, {"cluster": cluster, "work_dir": str(work_dir), "resources": resources})


def cleanup_stale(state_root: Path | None = None, cluster: str | None = None) -> list[str]:
    """Tear down every cluster recorded under ``state_root`` (or only ``cluster``).

    Also sweeps, by name, what a run left without recording it (the names carry the cluster).
    Returns the problems; an empty list means the machine holds nothing of those clusters.
    """
    root = Path(state_root) if state_root is not None else _default_root()
    dirs = {d.name for d in root.iterdir() if d.is_dir()} if root.is_dir() and not cluster else set()
    return sweep_recorded(root, cluster, teardown, swept_state, names=dirs)


def leftovers(cluster: str, state_root: Path | None = None, work_dir: Path | None = None) -> list[str]:
    """Everything of ``cluster`` still on this machine, one line each (empty: nothing)."""
    root = Path(state_root) if state_root is not None else _default_root()
    wd = Path(work_dir) if work_dir is not None else root / cluster
    others = _other_clusters_names(root, cluster)
    out: list[str] = []
    spaces = [n for n in sorted(netns.list_netns()) if _ours(n, cluster, others)]
    out += [f"network namespace {n}" for n in spaces]
    out += [f"network device {n} (alias {link_alias(cluster)})" for n in netns.links_with_alias(link_alias(cluster))]
    cg = [p for p in cgroups.existing(cluster) if _ours(p.name, cluster, others)]
    out += [f"cgroup {p}" for p in cg]
    every = procs.all_pids()
    pids: dict[int, str] = {}
    inodes = {i for i in (netns.netns_inode(n) for n in spaces) if i is not None}
    for pid in procs.in_netns(inodes, every):
        pids[pid] = "in its network namespace"
    prefix = netns_name(cluster, "")
    for pid in _in_cgroup_prefix(prefix, others, every):
        pids.setdefault(pid, "in its cgroup subtree")
    for pid in procs.in_mount_ns_marked(hosts_marker(cluster), every):
        pids.setdefault(pid, "inside one of its nodes")
    for pid in procs.with_cmdline_containing(str(wd) + "/", every):
        pids.setdefault(pid, "command line names its work directory")
    out += [f"process {procs.describe(p)}: {why}" for p, why in sorted(pids.items()) if procs.alive(p)]
    out += [f"mount {m}" for m in mounts_under(wd)]
    if hostlimits.counted(wd):
        out.append(f"neighbour-table limits still raised for it ({hostlimits.REGISTRY})")
    if wd.exists():
        out.append(f"work directory {wd}")
    return out


def _in_cgroup_prefix(prefix: str, others: set[str], pids: Iterable[int]) -> set[int]:
    """Pids in a cgroup named ``prefix``… (any path component), except the subtrees ``others``."""
    return procs.in_cgroup_where(lambda path: any(p.startswith(prefix) and p not in others for p in path.split("/")), pids)


__all__ = ["cleanup_stale", "leftovers", "teardown", "PREFIX"]
