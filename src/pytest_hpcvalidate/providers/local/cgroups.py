"""Per-node cgroup subtrees, on both layouts.

Several slurmd on one host would collide in one cgroup tree (a multi-node job has the same
job id on every node), so each node gets its own subtree ``hpcv-<cluster>-<node>`` and
sees it as its whole cgroup tree:

- ``v1`` (hybrid or legacy hierarchy, these developer machines): the subtree is created
  under every v1 controller; inside the node's mount namespace a tmpfs covers
  /sys/fs/cgroup and each controller's subtree is bound onto /sys/fs/cgroup/<controller>.
- ``v2`` (unified only, the lent GPU machine and current distributions): one subtree under
  the v2 root; the node's anchor joins it and unshares a cgroup namespace, so a fresh
  cgroup2 mount inside shows the subtree as the root. Daemons live in the ``daemon`` leaf,
  Slurm's scopes under ``system.slice``.

Teardown removes the subtrees depth-first (children before parents) once every process
in them is gone.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from .naming import cgroup_name

CGROUP_ROOT = Path("/sys/fs/cgroup")
#: the controllers a v2 node enables for Slurm (root and system.slice)
V2_CONTROLLERS = ("cpuset", "cpu", "memory", "pids")
#: where daemons live inside a v2 node (a leaf: the node's root has controllers enabled)
V2_DAEMON_LEAF = "daemon"


def detect_layout(root: Path = CGROUP_ROOT) -> str:
    """``v2`` when only the unified hierarchy is mounted, else ``v1``."""
    if (root / "cgroup.controllers").exists() and not (root / "memory").is_dir():
        return "v2"
    return "v1"


@dataclass(frozen=True)
class V1Hierarchy:
    name: str        # directory name under /sys/fs/cgroup (e.g. "cpu,cpuacct" or "memory")
    path: Path       # its mount point
    controllers: tuple[str, ...]


def v1_hierarchies(mountinfo: str | None = None) -> list[V1Hierarchy]:
    """The v1 controller hierarchies mounted directly under /sys/fs/cgroup (named ones skipped)."""
    if mountinfo is None:
        with open("/proc/self/mountinfo") as fh:
            mountinfo = fh.read()
    found: dict[str, V1Hierarchy] = {}
    for line in mountinfo.splitlines():
        pre, _, post = line.partition(" - ")
        fields = pre.split()
        rest = post.split()
        if len(fields) < 5 or len(rest) < 3 or rest[0] != "cgroup":
            continue
        mnt = Path(fields[4])
        if mnt.parent != CGROUP_ROOT:
            continue
        opts = rest[2].split(",")
        ctrls = tuple(o for o in opts if o not in ("rw", "ro") and "=" not in o and not o.startswith("no")
                      and o not in ("relatime", "noatime", "nosuid", "nodev", "noexec", "clone_children",
                                    "cpuset_v2_mode", "xattr", "memory_localevents", "memory_recursiveprot",
                                    "nsdelegate", "favordynmods"))
        if not ctrls:  # name=systemd and similar: no controller, nothing for Slurm
            continue
        found[mnt.name] = V1Hierarchy(mnt.name, mnt, ctrls)
    return sorted(found.values(), key=lambda h: h.name)


def v1_symlinks(root: Path = CGROUP_ROOT) -> dict[str, str]:
    """Links like ``cpu -> cpu,cpuacct`` under /sys/fs/cgroup, recreated inside each node."""
    links = {}
    try:
        for entry in os.scandir(root):
            if entry.is_symlink():
                links[entry.name] = os.readlink(entry.path)
    except OSError:
        pass
    return links


@dataclass(frozen=True)
class NodeCgroups:
    """Where one node's cgroup subtree(s) live on the host."""

    layout: str
    name: str
    #: v1: hierarchy name → host path of the subtree; v2: {"": subtree}
    subtrees: dict[str, Path]

    @property
    def paths(self) -> list[Path]:
        return list(self.subtrees.values())

    def daemon_procs_files(self) -> list[Path]:
        """The ``cgroup.procs`` files a daemon launcher writes its pid into (host paths)."""
        if self.layout == "v2":
            return [self.subtrees[""] / V2_DAEMON_LEAF / "cgroup.procs"]
        return [p / "cgroup.procs" for p in self.subtrees.values()]


def node_cgroups(layout: str, cluster: str, node: str, hierarchies: list[V1Hierarchy] | None = None) -> NodeCgroups:
    name = cgroup_name(cluster, node)
    if layout == "v2":
        return NodeCgroups(layout, name, {"": CGROUP_ROOT / name})
    hs = v1_hierarchies() if hierarchies is None else hierarchies
    return NodeCgroups(layout, name, {h.name: h.path / name for h in hs})


def _copy(src: Path, dst: Path) -> None:
    value = src.read_text().strip()
    if value:
        dst.write_text(value)


def create(cg: NodeCgroups) -> None:
    """Create the node's subtree(s); copy cpuset.cpus/mems into v1 cpuset directories."""
    if cg.layout == "v2":
        ensure_v2_root_controllers()
        path = cg.subtrees[""]
        path.mkdir(exist_ok=True)
        return
    for path in cg.paths:
        path.mkdir(exist_ok=True)
        if (path / "cpuset.cpus").exists():
            _copy(path.parent / "cpuset.cpus", path / "cpuset.cpus")
            _copy(path.parent / "cpuset.mems", path / "cpuset.mems")


def ensure_v2_root_controllers(root: Path = CGROUP_ROOT) -> None:
    """Make the v2 root delegate the controllers a node needs (usually already the case)."""
    try:
        enabled = set((root / "cgroup.subtree_control").read_text().split())
        available = set((root / "cgroup.controllers").read_text().split())
    except OSError:
        return
    missing = [c for c in V2_CONTROLLERS if c in available and c not in enabled]
    if missing:
        (root / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in missing))


# -- processes and removal ------------------------------------------------------------------

def _walk_dirs(path: Path) -> list[Path]:
    """``path`` and every directory below it, deepest first (the order rmdir needs)."""
    out: list[Path] = []
    try:
        for dirpath, _dirnames, _ in os.walk(path, topdown=False):
            out.append(Path(dirpath))
    except OSError:
        pass
    return out


def pids_in(path: Path) -> set[int]:
    """Every pid in the subtree at ``path`` (recursively)."""
    pids: set[int] = set()
    for d in _walk_dirs(path):
        try:
            text = (d / "cgroup.procs").read_text()
        except OSError:
            continue
        pids.update(int(x) for x in text.split())
    return pids


def thaw(path: Path) -> None:
    """Thaw a v1 freezer subtree (a frozen task ignores SIGKILL until thawed)."""
    for d in _walk_dirs(path):
        state = d / "freezer.state"
        try:
            if state.read_text().strip() != "THAWED":
                state.write_text("THAWED")
        except OSError:
            pass


def kill_v2(path: Path) -> bool:
    """``cgroup.kill`` (kernel >= 5.14): SIGKILL every process in the subtree at once."""
    try:
        (path / "cgroup.kill").write_text("1")
        return True
    except OSError:
        return False


def remove_tree(path: Path, timeout: float = 3.0) -> list[str]:
    """rmdir the subtree depth-first; retries while the kernel still counts exiting tasks."""
    deadline = time.monotonic() + timeout
    while True:
        errors = []
        for d in _walk_dirs(path):
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                errors.append(f"cgroup {d}: {exc.strerror}")
        if not errors or time.monotonic() >= deadline:
            return errors
        time.sleep(0.02)


def existing(cluster: str, names: set[str] | None = None) -> list[Path]:
    """Host paths of cgroup subtrees named ``hpcv-<cluster>-*`` (or exactly ``names``)."""
    prefix = cgroup_name(cluster, "")
    roots = [CGROUP_ROOT]
    try:
        roots += [Path(e.path) for e in os.scandir(CGROUP_ROOT) if e.is_dir(follow_symlinks=False)]
    except OSError:
        pass
    found = []
    for root in roots:
        try:
            entries = list(os.scandir(root))
        except OSError:
            continue
        for e in entries:
            if not e.is_dir(follow_symlinks=False):
                continue
            if (names is not None and e.name in names) or (names is None and e.name.startswith(prefix)):
                found.append(Path(e.path))
    return found
