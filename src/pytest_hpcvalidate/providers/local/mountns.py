"""A node's namespaces: the long-lived anchor process and the mount setup it runs.

Per node one *anchor* (``sleep infinity`` in the end) is started in the node's network
namespace under ``unshare --uts --mount --propagation private`` (plus ``--cgroup`` on v2).
Before it sleeps it sets the node up:

- hostname = node name (slurmd finds its NodeName by it); loopback and eth0 configured
- a fresh sysfs on /sys (as ``ip netns exec`` does, so /sys/class/net is the node's)
- cgroups: v1, a tmpfs on /sys/fs/cgroup with the node's subtree of every controller bound
  onto /sys/fs/cgroup/<controller>; v2, a cgroup2 mount that shows the node's subtree as
  the root, the anchor in the ``daemon`` leaf, controllers delegated to ``system.slice``
- /dev: an overlay on the host's /dev whose upper layer holds the node's simulated GPUs
  (``/dev/nvidia<i>``, char 195:i), devpts re-attached, a private tmpfs on /dev/shm
- binds from the work directory: /etc/hosts, /etc/slurm (the cluster's configs), /etc/passwd
  and /etc/group where the config names users (accounts.py), /run
  (the node's munge socket, sshd's privsep dir), /tmp (private: PMIx needs that). The host
  replacing one of those /etc files detaches its bind; attaching binds it again
  (``detached_binds``, ``engine.LocalCluster.attach``)

Every daemon of the node enters the anchor's namespaces with ``nsenter -t <anchor pid> -n -m -u``
(``-C`` too on v2, after joining the node's subtree). The checks' commands (the provider's
``NsenterTransport``) enter the network, mount and UTS namespaces only: they stay in the
caller's cgroup on either layout; what a check asks of cgroups it asks through Slurm jobs,
which slurmd places in the node's tree. The shared directory lives under
the work directory, so it is at the same path in every node and no private bind hides it.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from . import netns as netns_mod
from .accounts import ACCOUNT_FILES
from .cgroups import V2_CONTROLLERS, V2_DAEMON_LEAF, NodeCgroups
from .naming import netns_name
from .spec import LocalSpec, NodeSpec

READY = "hpcv-anchor-ready"


@dataclass(frozen=True)
class NodePaths:
    """The per-node directories under ``<work_dir>/nodes/<node>``."""

    root: Path

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def munge(self) -> Path:
        return self.root / "munge"

    @property
    def munge_key(self) -> Path:
        return self.munge / "munge.key"

    @property
    def munge_socket(self) -> Path:
        """Host path of the socket munged serves inside the node at /run/munge/munge.socket.2."""
        return self.run / "munge" / "munge.socket.2"

    @property
    def dev_upper(self) -> Path:
        return self.root / "dev" / "upper"

    @property
    def dev_work(self) -> Path:
        return self.root / "dev" / "work"

    @property
    def stage(self) -> Path:
        return self.root / ".stage"

    def dirs(self) -> list[tuple[Path, int]]:
        """Directories to create, with their modes."""
        return [
            (self.root, 0o755),
            (self.run, 0o755),
            (self.run / "munge", 0o755),
            (self.run / "sshd", 0o755),
            (self.run / "lock", 0o755),
            (self.tmp, 0o1777),
            (self.log, 0o755),
            (self.spool, 0o755),
            (self.munge, 0o700),
            (self.dev_upper, 0o755),
            (self.dev_work, 0o755),
            (self.stage, 0o700),
            (self.stage / "pts", 0o755),
            (self.stage / "cg", 0o755),
        ]


def _q(path) -> str:
    return shlex.quote(str(path))


def etc_binds(spec: LocalSpec) -> list[tuple[Path, str]]:
    """(source under the work directory, target under /etc) of every node's /etc binds."""
    wd = Path(spec.work_dir) / "etc"
    names = ["hosts", "slurm", *(ACCOUNT_FILES if spec.users else ())]
    return [(wd / name, f"/etc/{name}") for name in names]


def detached_binds(anchor_pid: int, binds: list[tuple[Path, str]]) -> list[tuple[Path, str]]:
    """The binds of ``binds`` gone from the node of ``anchor_pid``: where it sees the host's own
    file again.

    The host replacing one of its own files by rename (``useradd``, ``adduser`` in a package's
    postinst, an editor saving /etc/hosts) detaches every bind over that path in every mount
    namespace (Linux >= 3.18). Another file bound over the node's (a fault injected on purpose,
    an operator's change) is not this and is left alone. Read through ``/proc/<pid>/root``,
    which resolves paths in that process's mount namespace.
    """
    def same(a: os.stat_result, b: os.stat_result) -> bool:
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

    gone = []
    for src, dst in binds:
        try:
            inside, host, source = os.stat(f"/proc/{anchor_pid}/root{dst}"), os.stat(dst), os.stat(src)
        except OSError:
            continue
        if same(inside, host) and not same(inside, source):
            gone.append((src, dst))
    return gone


def rebind_argv(anchor_pid: int, src: Path, dst: str) -> list[str]:
    """Bind ``src`` over ``dst`` again, in the mount namespace of the node of ``anchor_pid``."""
    return ["nsenter", "-t", str(anchor_pid), "-m", "--", "mount", "--bind", str(src), dst]


def anchor_script(
    spec: LocalSpec,
    node: NodeSpec,
    paths: NodePaths,
    cg: NodeCgroups,
    symlinks: dict[str, str] | None = None,
) -> str:
    """The shell script the anchor runs (as /bin/sh) before ``exec sleep infinity``."""
    ip_lines = "\\n".join(netns_mod.node_inside_lines(spec, node))
    s: list[str] = [
        "set -e",
        f"hostname {_q(node.name)}",
        f"printf '{ip_lines}\\n' | ip -batch -",
    ]
    # the cgroup tmpfs is assembled at a staging path while the host's subtrees are still
    # visible, then moved (with its submounts) onto the fresh sysfs's /sys/fs/cgroup
    cg_stage = paths.stage / "cg"
    if cg.layout == "v1":
        s.append(f"mount -t tmpfs -o mode=755,size=64k,nosuid,nodev,noexec hpcv-cgroup {_q(cg_stage)}")
        s.append("mkdir " + " ".join(_q(cg_stage / h) for h in sorted(cg.subtrees)))
        for h, sub in sorted(cg.subtrees.items()):
            s.append(f"mount --bind {_q(sub)} {_q(cg_stage / h)}")
        for name, target in sorted((symlinks or {}).items()):
            if target in cg.subtrees:
                s.append(f"ln -s {_q(target)} {_q(cg_stage / name)}")
    if node.gpus:  # the /dev overlay hides devpts: keep it at a staging path meanwhile
        s.append(f"mount --rbind /dev/pts {_q(paths.stage / 'pts')}")
    s.append("mount -t sysfs -o nosuid,nodev,noexec sysfs /sys 2>/dev/null || true")
    if cg.layout == "v1":
        s.append(f"mount --move {_q(cg_stage)} /sys/fs/cgroup")
    else:
        ctrls = " ".join(V2_CONTROLLERS)
        s += [
            "mount -t cgroup2 -o nosuid,nodev,noexec none /sys/fs/cgroup",
            f"mkdir -p /sys/fs/cgroup/{V2_DAEMON_LEAF} /sys/fs/cgroup/system.slice",
            f"echo $$ > /sys/fs/cgroup/{V2_DAEMON_LEAF}/cgroup.procs",
            f"for d in /sys/fs/cgroup /sys/fs/cgroup/system.slice; do for c in {ctrls}; do "
            "echo +$c > $d/cgroup.subtree_control 2>/dev/null || true; done; done",
        ]
    if node.gpus:
        s += [
            f"mount -t overlay hpcv-dev -o lowerdir=/dev,upperdir={_q(paths.dev_upper)},"
            f"workdir={_q(paths.dev_work)} /dev",
            f"mount --move {_q(paths.stage / 'pts')} /dev/pts",
        ]
    s.append("mount -t tmpfs -o mode=1777,nosuid,nodev hpcv-shm /dev/shm")
    s += [
        *[f"mount --bind {_q(src)} {dst}" for src, dst in etc_binds(spec)],
        f"mount --bind {_q(paths.run)} /run",
        f"mount --bind {_q(paths.tmp)} /tmp",
    ]
    if cg.layout == "v1":
        for h in sorted(cg.subtrees):
            s.append(f"echo $$ > /sys/fs/cgroup/{_q(h)}/cgroup.procs")
    s += [f"echo {READY}", "exec sleep infinity"]
    return "\n".join(s) + "\n"


def anchor_argv(spec: LocalSpec, node: NodeSpec, script: str, cg: NodeCgroups) -> list[str]:
    ns = netns_name(spec.cluster, node.name)
    inner = ["nsenter", f"--net={netns_mod.NETNS_DIR / ns}", "--", "unshare", "--uts", "--mount",
             "--propagation", "private"]
    if cg.layout == "v2":
        inner.append("--cgroup")
    inner += ["--", "/bin/sh", "-c", script]
    if cg.layout == "v2":
        # join the node's subtree first: the cgroup namespace is rooted where unshare runs
        return ["/bin/sh", "-c", 'echo $$ > "$1" && shift && exec "$@"', "sh",
                str(cg.subtrees[""] / "cgroup.procs"), *inner]
    return inner


def enter_argv(anchor_pid: int, cg: NodeCgroups, argv: list[str]) -> list[str]:
    """Run ``argv`` in the node: join the node's cgroup(s), then enter its namespaces.

    The launcher execs all the way down, so the pid of the Popen is the daemon's pid.
    """
    files = [str(f) for f in cg.daemon_procs_files()]
    ns = ["-n", "-m", "-u"] + (["-C"] if cg.layout == "v2" else [])
    script = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1"; shift; n=$((n-1)); done; exec "$@"'
    return ["/bin/sh", "-c", script, "sh", str(len(files)), *files,
            "nsenter", "-t", str(anchor_pid), *ns, "--", *argv]
