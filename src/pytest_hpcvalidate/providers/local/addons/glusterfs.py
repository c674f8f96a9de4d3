"""GlusterFS across the node namespaces: the local cluster's real distributed filesystem.

For every ``storage`` entry of kind ``glusterfs`` (config → ``spec.extra["storage"]``):

- one ``glusterd`` per storage node (``storage_nodes``; default: every compute node). Each
  gets a private ``/var/lib/glusterd`` and ``/var/log/glusterfs`` (bound in the node's own
  mount namespace; ``/run`` is already the node's): with a shared ``/run`` the second
  glusterd finds ``/run/glusterd.socket`` taken and dies. glusterd runs in the foreground
  (``-N``) as a recorded daemon, like slurmd;
- the storage nodes are peer-probed from the first one (the CLI runs inside that node:
  ``--remote-host`` fails silently), then a *distributed* volume with one brick per storage
  node under ``<work dir>/bricks/<volume>/<node>`` is created (``force``: bricks on the root
  filesystem) and started; with ``brick_size_mib`` each brick is a tmpfs of that size mounted
  in its storage node (a brick that can fill up);
- it is FUSE-mounted at the mount point on every node of ``nodes`` (``ALL``: every compute
  node), inside that node's mount namespace. A mount point missing on the host is made
  inside the node on an overlay of its nearest existing parent (upper layer in the work
  directory), so nothing is created outside the work directory; only when that parent would
  be ``/`` (or holds the work directory) is the directory created on the host, recorded in
  the state file first.

Every process glusterd starts (bricks, the FUSE clients) lives in the node's network
namespace and cgroups, so the base teardown and ``cleanup`` after a crash find them without
a record; bricks and clients are recorded anyway (``what``: ``glusterfsd``,
``glusterfs-client``) so fault injection can name and stop them. ``down`` unmounts the clients
and stops the daemons in order; the namespaces' end removes whatever was left.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ....hostlist import expand
from ....probes import storage as probe
from ...base import ProvisioningError
from .. import daemons, procs
from . import stop_daemons

NAME = "glusterfs"
GLUSTERD_PORT = 24007
#: where glusterd serves the gluster CLI (as bound: /var/run is a link to the node's /run)
CLI_SOCKET = "/var/run/glusterd.socket"
#: program -> the Debian package that ships it
BINARIES = {"glusterd": "glusterfs-server", "gluster": "glusterfs-server", "glusterfsd": "glusterfs-server",
            "mount.glusterfs": "glusterfs-client"}
#: stands in for gsyncd inside storage nodes: answers --version as gsyncd does, accepts the rest
GSYNCD_STUB = '#!/bin/sh\n[ "$1" = --version ] && echo "gsyncd.py (hpcvalidate stand-in)"\nexit 0\n'
START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Volume:
    """One glusterfs storage entry, resolved against the cluster's nodes."""

    index: int            # position in the config's storage list (for error messages)
    name: str             # gluster volume name
    mount_point: str
    servers: tuple[str, ...]   # storage nodes, one brick each
    clients: tuple[str, ...]   # nodes that mount it
    brick_size_mib: int | None = None  # each brick a tmpfs of this size (None: a directory)

    @property
    def server(self) -> str:
        """The node clients fetch the volume file from (the first storage node)."""
        return self.servers[0]

    @property
    def source(self) -> str:
        """What /proc/mounts shows as the mount's source."""
        return f"{self.server}:/{self.name}"


def _volume_name(entry: dict, used: set[str]) -> str:
    if entry.get("source") and ":/" in entry["source"]:
        base = entry["source"].split(":/", 1)[1].strip("/")
    else:
        base = re.sub(r"[^A-Za-z0-9_-]", "-", Path(entry["mount_point"]).name) or "vol"
    name, i = base, 1
    while name in used:
        i += 1
        name = f"{base}{i}"
    used.add(name)
    return name


def volumes(spec) -> list[Volume]:
    """The glusterfs volumes ``spec`` asks for; ProvisioningError names the field to fix."""
    compute = [n.name for n in spec.compute]
    every = {n.name for n in spec.nodes}
    used: set[str] = set()
    out = []
    for i, entry in enumerate(spec.extra.get("storage") or []):
        if entry.get("kind") != NAME:
            continue
        servers = tuple(entry.get("storage_nodes") or compute)
        nodes = entry.get("nodes") or "ALL"
        clients = tuple(compute if nodes == "ALL" else expand(nodes))
        unknown = sorted((set(servers) | set(clients)) - every)
        if unknown:
            raise ProvisioningError(f"storage[{i}]: unknown node(s) {', '.join(unknown)}; use nodes of this cluster")
        vol = Volume(i, _volume_name(entry, used), entry["mount_point"], servers, clients,
                     entry.get("brick_size_mib"))
        src = entry.get("source")
        if src and src != vol.source:
            raise ProvisioningError(
                f"storage[{i}].source: the local provider serves this volume as {vol.source}, not {src}; "
                f"use that (or leave source out)")
        out.append(vol)
    return out


def applies(spec) -> bool:
    return any(e.get("kind") == NAME for e in spec.extra.get("storage") or [])


# -- paths -------------------------------------------------------------------------------------

def brick_path(engine, vol: Volume, node: str) -> Path:
    return engine.work_dir / "bricks" / vol.name / node


def _node_dir(engine, node: str, what: str) -> Path:
    return engine.node_paths(node).root / "glusterfs" / what


def client_log(engine, vol: Volume, node: str) -> Path:
    return engine.node_paths(node).log / f"glusterfs-{vol.name}.log"


# -- running things inside nodes ----------------------------------------------------------------

def _run(engine, node: str, command: str, what: str, timeout: float = 60.0):
    r = engine.cluster.node(node).run(command, timeout=timeout)
    if not r.ok:
        raise ProvisioningError(f"glusterfs: {what} on {node} failed: {r.describe(600)}")
    return r


def _run_all(engine, nodes, command, what: str, timeout: float = 60.0) -> None:
    targets = [engine.cluster.node(n) for n in nodes]
    results = engine.cluster.run_all(command, nodes=targets, timeout=timeout)
    bad = [f"{name}: {r.describe(300)}" for name, r in results.items() if not r.ok]
    if bad:
        raise ProvisioningError(f"glusterfs: {what} failed on " + "; ".join(bad))


def node_pids(engine, node: str, comm: str, needle: str = "") -> list[int]:
    """Pids of ``comm`` processes in ``node``'s network namespace whose command line holds ``needle``."""
    try:
        inode = os.stat(f"/proc/{engine.anchor_pid(node)}/ns/net").st_ino
    except (OSError, KeyError):
        return []
    found = []
    for pid in procs.in_netns({inode}):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != comm:
                continue
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline:
            found.append(pid)
    return sorted(found)


def _record(engine, items: list[tuple[int, str, str]]) -> None:
    recorded = {r["pid"] for r in engine.state.of_kind("process")}
    new = [i for i in items if i[0] not in recorded]
    if new:
        engine.state.add_processes(new)


def _wait(engine, cond, what: str, timeout: float = START_TIMEOUT_S) -> None:
    """The engine's wait (polls; times out with the daemons' log tails), watching glusterd."""
    engine.wait_until(cond, what, timeout, [d for d in engine.daemons if d.what == "glusterd"])


# -- glusterd -------------------------------------------------------------------------------------

def _gsyncd_paths() -> list[str]:
    """The geo-replication helper glusterd runs at start-up (a Python program, called several
    times: seconds of CPU per node, glusterd answers no CLI meanwhile). Geo-replication is not
    used here; inside the storage nodes it is replaced by :data:`GSYNCD_STUB` (glusterd refuses
    to start when it fails outright)."""
    return sorted(glob.glob("/usr/lib/*/glusterfs/gsyncd") + glob.glob("/usr/libexec/glusterfs/gsyncd"))


def _start_glusterd(engine, servers: list[str], progress) -> None:
    for n in servers:
        for what in ("lib", "log"):
            _node_dir(engine, n, what).mkdir(parents=True, exist_ok=True)
    stub = engine.work_dir / "glusterfs" / "gsyncd"
    stub.parent.mkdir(parents=True, exist_ok=True)
    stub.write_text(GSYNCD_STUB)
    stub.chmod(0o755)
    no_georep = "".join(f" && mount --bind {shlex.quote(str(stub))} {shlex.quote(p)}" for p in _gsyncd_paths())
    _run_all(engine, servers, lambda node: (
        f"mount --bind {shlex.quote(str(_node_dir(engine, node.name, 'lib')))} /var/lib/glusterd && "
        f"mount --bind {shlex.quote(str(_node_dir(engine, node.name, 'log')))} /var/log/glusterfs{no_georep}"),
        "giving glusterd its private /var/lib/glusterd and /var/log/glusterfs")
    for n in servers:
        progress(NAME, n, "glusterd")
        log = engine.node_paths(n).log / "glusterd.log"
        # the engine's own launcher: the node's cgroups and namespaces, foreground, recorded
        engine.launch_daemon(engine.node_spec_of(n), "glusterd", ["glusterd", "-N", f"--log-file={log}"], [log])
    engine.record_launched()
    # the CLI talks to the unix socket; one started before it exists waits seconds to retry
    _wait(engine, lambda: all(daemons.listening(engine.anchor_pid(n), GLUSTERD_PORT)
                              and daemons.unix_listening(engine.anchor_pid(n), CLI_SOCKET) for n in servers),
          f"glusterd to listen on {', '.join(servers)}")


def _probe_peers(engine, servers: list[str], progress) -> None:
    first, others = servers[0], servers[1:]
    if not others:
        return
    progress(NAME, first, f"peer probe {' '.join(others)}")
    _run(engine, first, " && ".join(f"gluster --mode=script peer probe {shlex.quote(o)}" for o in others),
         "peer probe", timeout=60)
    node = engine.cluster.node(first)

    def connected() -> bool:
        r = probe.gluster(node, "peer status --xml")
        try:
            peers = probe.parse_peer_status(r.stdout)
        except (probe.GlusterError, ValueError):
            return False
        return {p.hostname for p in peers if p.connected} >= set(others) and all(
            p.state == "Peer in Cluster" for p in peers)

    _wait(engine, connected, f"peers {', '.join(others)} to be connected to {first}")


# -- volumes ----------------------------------------------------------------------------------------

def _create_volume(engine, vol: Volume, progress) -> None:
    progress(NAME, vol.server, f"volume {vol.name}: {len(vol.servers)} bricks")
    bricks = []
    for n in vol.servers:
        path = brick_path(engine, vol, n)
        path.mkdir(parents=True, exist_ok=True)
        bricks.append(f"{n}:{path}")
    if vol.brick_size_mib:  # a filesystem of its own in the storage node (gone with the node)
        _run_all(engine, vol.servers, lambda node: f"mount -t tmpfs -o size={int(vol.brick_size_mib)}M hpcv-brick "
                 f"{shlex.quote(str(brick_path(engine, vol, node.name)))}", f"giving volume {vol.name} its bricks")
    _run(engine, vol.server, f"gluster --mode=script volume create {vol.name} transport tcp "
         f"{' '.join(shlex.quote(b) for b in bricks)} force", f"creating volume {vol.name}", timeout=60)
    start_volume(engine, vol)


def start_volume(engine, vol: Volume, force: bool = False) -> list[probe.GlusterBrick]:
    """``gluster volume start`` (``force`` restarts dead bricks of a started volume); waits
    until every brick is online and records the brick processes."""
    _run(engine, vol.server, f"gluster --mode=script volume start {vol.name}" + (" force" if force else ""),
         f"starting volume {vol.name}", timeout=60)
    node = engine.cluster.node(vol.server)
    bricks: list[probe.GlusterBrick] = []

    def online() -> bool:
        nonlocal bricks
        problems, bricks = probe.gluster_health(node, vol.name, list(vol.servers))
        return not problems

    _wait(engine, online, f"every brick of volume {vol.name} to be online")
    _record(engine, [(b.pid, b.host, "glusterfsd") for b in bricks if b.pid])
    return bricks


def _mount_point_plan(engine, node: str, mount_points: list[str]) -> tuple[list[str], list[str]]:
    """(directories to overlay inside the node, directories to create on the host) so that
    every mount point exists in ``node``."""
    root = f"/proc/{engine.anchor_pid(node)}/root"
    overlays: list[str] = []
    on_host: list[str] = []
    for mp in mount_points:
        if os.path.isdir(root + mp):
            continue
        parent = Path(mp)
        while not os.path.isdir(root + str(parent)):
            parent = parent.parent
        work = Path(engine.work_dir)
        if parent == Path("/") or parent == work or parent in work.parents:
            first_missing = Path(mp)
            while first_missing.parent != parent:
                first_missing = first_missing.parent
            on_host.append(str(first_missing))
        elif not any(Path(o) == parent or Path(o) in parent.parents for o in overlays):
            overlays = [o for o in overlays if parent not in Path(o).parents] + [str(parent)]
    return overlays, on_host


def _prepare_mount_points(engine, vols: list[Volume]) -> None:
    nodes = sorted({n for v in vols for n in v.clients})
    commands = {}
    for n in nodes:
        points = [v.mount_point for v in vols if n in v.clients]
        overlays, on_host = _mount_point_plan(engine, n, points)
        for d in on_host:
            if not os.path.exists(d):
                engine.state.add("dir", path=d)  # recorded before it is made
                os.makedirs(d, exist_ok=True)
        lines = []
        for i, parent in enumerate(overlays):
            base = _node_dir(engine, n, f"overlay{i}")
            (base / "upper").mkdir(parents=True, exist_ok=True)
            (base / "work").mkdir(parents=True, exist_ok=True)
            lines.append(f"mount -t overlay hpcv-mountpoints -o lowerdir={shlex.quote(parent)},"
                         f"upperdir={shlex.quote(str(base / 'upper'))},workdir={shlex.quote(str(base / 'work'))} "
                         f"{shlex.quote(parent)}")
        lines += [f"mkdir -p {shlex.quote(p)}" for p in points]
        commands[n] = " && ".join(lines)
    _run_all(engine, nodes, lambda node: commands[node.name], "preparing the mount points")


def mount_command(engine, vol: Volume, node: str) -> str:
    return (f"mount -t glusterfs -o log-file={shlex.quote(str(client_log(engine, vol, node)))} "
            f"{vol.source} {shlex.quote(vol.mount_point)}")


def mount(engine, vol: Volume, nodes: list[str] | None = None) -> None:
    """FUSE-mount ``vol`` on ``nodes`` (default: its clients) and record the client processes."""
    targets = list(nodes or vol.clients)
    _run_all(engine, targets, lambda node: mount_command(engine, vol, node.name), f"mounting {vol.source}")
    _record(engine, [(pid, n, "glusterfs-client") for n in targets
                     for pid in node_pids(engine, n, "glusterfs", vol.mount_point)])


# -- the addon ---------------------------------------------------------------------------------------

def _check_binaries() -> None:
    missing = sorted({pkg for b, pkg in BINARIES.items() if shutil.which(b) is None
                      and not os.access(f"/sbin/{b}", os.X_OK)})
    if missing:
        raise ProvisioningError(f"glusterfs storage needs: apt-get install -y {' '.join(missing)}")


def up(engine, progress) -> None:
    _check_binaries()
    vols = volumes(engine.spec)
    servers = list(dict.fromkeys(n for v in vols for n in v.servers))
    t0 = time.monotonic()
    _start_glusterd(engine, servers, progress)
    _probe_peers(engine, servers, progress)
    engine.timings["glusterfs_glusterd"] = round(time.monotonic() - t0, 4)
    t1 = time.monotonic()
    for vol in vols:
        _create_volume(engine, vol, progress)
    engine.timings["glusterfs_volumes"] = round(time.monotonic() - t1, 4)
    t2 = time.monotonic()
    _prepare_mount_points(engine, vols)
    for vol in vols:
        progress(NAME, "", f"mount {vol.source} at {vol.mount_point} on {len(vol.clients)} nodes")
        mount(engine, vol)
    engine.timings["glusterfs_mounts"] = round(time.monotonic() - t2, 4)


def down(engine) -> list[str]:
    """Unmount the clients, then stop bricks and glusterd (what is left goes with the nodes)."""
    try:
        vols = volumes(engine.spec)
    except ProvisioningError as exc:
        return [str(exc)]
    for vol in vols:
        for n in vol.clients:
            # best effort: a node already gone (or a fault that unmounted it) leaves nothing to
            # undo here, and the end of the node's mount namespace unmounts whatever remains
            with contextlib.suppress(Exception):
                engine.cluster.node(n).run(f"umount -l {shlex.quote(vol.mount_point)}", timeout=15)
    nodes = sorted({n for v in vols for n in (*v.servers, *v.clients)})
    return stop_daemons(engine, [(n, what) for what in ("glusterfs-client", "glusterfsd", "glusterd")
                                 for n in nodes])


class _Addon:
    name = NAME
    applies = staticmethod(applies)
    up = staticmethod(up)
    down = staticmethod(down)


ADDON = _Addon()
