"""Shared-storage faults on a local cluster's GlusterFS: a brick process killed on one node,
a brick filled up, the filesystem unmounted on one node, a node that sees an ordinary
directory (stale, local data) where the shared filesystem should be. Each waits until the fault shows, and its repair
until the filesystem is whole again (every brick online, the mount back).

A node whose link is throttled is :func:`pytest_hpcvalidate.faults.network.rate_limited`.
"""

from __future__ import annotations

import contextlib
import shlex

from ..probes import storage as probe
from ..providers.local.addons import glusterfs
from . import mounted_on_node, require_local
from ._wait import until


def volume_at(engine, mount_point: str) -> glusterfs.Volume:
    """The GlusterFS volume the local cluster mounts at ``mount_point``."""
    require_local(engine)
    for vol in glusterfs.volumes(engine.spec):
        if vol.mount_point == mount_point:
            return vol
    raise KeyError(f"no glusterfs volume is mounted at {mount_point} in cluster {engine.spec.cluster!r}")


def _brick_online(engine, vol: glusterfs.Volume, name: str) -> bool | None:
    _, bricks = probe.gluster_health(engine.cluster.node(vol.server), vol.name)
    return next((b.online for b in bricks if b.host == name), None)


@contextlib.contextmanager
def brick_killed(engine, name: str, mount_point: str, timeout: float = 30.0):
    """The brick process (glusterfsd) of ``name`` is killed; glusterd reports it offline.
    Repair: ``gluster volume start VOL force`` restarts it."""
    vol = volume_at(engine, mount_point)
    pids = engine.stop_daemon(name, "glusterfsd")
    if not pids:
        raise RuntimeError(f"{name} runs no brick process of {vol.name}")
    try:
        until(lambda: _brick_online(engine, vol, name) is False, f"glusterd to report {name}'s brick offline",
              timeout)
        yield vol
    finally:
        glusterfs.start_volume(engine, vol, force=True)
        _clients_reach_every_brick(engine, vol, timeout)


def _clients_reach_every_brick(engine, vol: glusterfs.Volume, timeout: float) -> None:
    """Wait until every client has reconnected to the restarted brick: creating and removing a
    directory on a distributed volume needs every brick (clients find the brick's new port on
    their own, seconds after glusterd reports it online). ``mkdir -p``: an attempt made while
    the brick was away may have left the directory on the other bricks."""
    def attempt(node) -> str:
        d = shlex.quote(f"{vol.mount_point.rstrip('/')}/.hpcv-reconnect-{node.name}")
        return (f"for i in $(seq {int(timeout / 0.2)}); do mkdir -p {d} 2>/dev/null && rmdir {d} && exit 0; "
                "sleep 0.2; done; exit 1")

    results = engine.cluster.run_all(attempt, nodes=[engine.cluster.node(n) for n in vol.clients],
                                     timeout=timeout + 30)
    stuck = [name for name, r in results.items() if not r.ok]
    if stuck:
        raise TimeoutError(f"{', '.join(stuck)} still cannot create a directory on {vol.mount_point} "
                           f"after the brick restart ({timeout:g}s)")


@contextlib.contextmanager
def brick_filled(engine, name: str, mount_point: str, leave_mib: int = 64):
    """``name``'s brick filled up to ``leave_mib`` MiB free, by a file written straight into
    the brick (as a runaway job on a storage server would). Needs bricks of their own size
    (``brick_size_mib``): a brick directory on the root filesystem cannot be filled."""
    vol = volume_at(engine, mount_point)
    if not vol.brick_size_mib:
        raise RuntimeError(f"bricks of {vol.name} share the host's filesystem; set storage brick_size_mib to fill one")
    node = engine.cluster.node(name)
    brick = glusterfs.brick_path(engine, vol, name)
    filler = shlex.quote(str(brick / ".hpcv-fault-filler"))
    free_kib = int(node.run(f"df -P -k {shlex.quote(str(brick))} | tail -1", timeout=15).check().stdout.split()[3])
    node.run(f"fallocate -l {max(0, free_kib - leave_mib * 1024)}K {filler}", timeout=60).check()
    try:
        yield vol
    finally:
        node.run(f"rm -f {filler}", timeout=60).check()


def _mounted(engine, name: str, mount_point: str) -> bool:
    entry = probe.mount_at(probe.mounts(engine.cluster.node(name)), mount_point)
    return entry is not None and entry.fstype in probe.FSTYPES["glusterfs"]


def _remount(engine, vol: glusterfs.Volume, name: str) -> None:
    node = engine.cluster.node(name)
    while probe.mount_at(probe.mounts(node), vol.mount_point) is not None:  # whatever the fault left on top
        node.run(f"umount -l {shlex.quote(vol.mount_point)}", timeout=15).check()
    glusterfs.mount(engine, vol, [name])
    until(lambda: _mounted(engine, name, vol.mount_point), f"{vol.mount_point} mounted on {name} again")


@contextlib.contextmanager
def unmounted(engine, name: str, mount_point: str):
    """The shared filesystem is unmounted on ``name`` (the mount point is an empty directory)."""
    vol = volume_at(engine, mount_point)
    engine.cluster.node(name).run(f"umount {shlex.quote(mount_point)}", timeout=30).check()
    try:
        yield vol
    finally:
        _remount(engine, vol, name)


@contextlib.contextmanager
def stale_directory(engine, name: str, mount_point: str):
    """``name`` sees an ordinary directory at the mount point, holding a copy of what the
    filesystem held when the fault began (files written elsewhere later never show up there,
    files written there reach no other node)."""
    vol = volume_at(engine, mount_point)
    node = engine.cluster.node(name)
    stale = engine.node_paths(name).root / "fault-stale-copy"
    mp = shlex.quote(mount_point)
    node.run(f"rm -rf {shlex.quote(str(stale))} && mkdir -p {shlex.quote(str(stale))} && "
             f"cp -a {mp}/. {shlex.quote(str(stale))}/ && umount {mp} && "
             f"mount --bind {shlex.quote(str(stale))} {mp}", timeout=60).check()
    try:
        yield vol
    finally:
        _remount(engine, vol, name)
        node.run(f"rm -rf {shlex.quote(str(stale))}", timeout=60)


@contextlib.contextmanager
def private_directory(engine, names: list[str], path: str):
    """Each of ``names`` sees an empty tmpfs of its own at ``path`` (a directory that should be
    shared, such as the cluster's shared directory): what a node writes there no other sees."""
    with contextlib.ExitStack() as stack:
        for n in names:
            stack.enter_context(mounted_on_node(engine.cluster.node(n), path, "-t", "tmpfs", "-o", "size=16m",
                                                "hpcv-fault-private"))
        yield


@contextlib.contextmanager
def ids_mapped_on_node(engine, name: str, mount_point: str, uid: int, to: int):
    """``name`` sees the filesystem through bindfs, which shows what ``uid`` (and the group of
    that number) owns as owned by ``to``: a client that maps ids (squash, a differing NFSv4
    idmap domain)."""
    require_local(engine)
    node = engine.cluster.node(name)
    source = engine.node_paths(name).root / "fault-idmap-source"
    mp, src = shlex.quote(mount_point), shlex.quote(str(source))
    node.run(f"mkdir -p {src} && mount --bind {mp} {src} && "
             f"bindfs --map={uid}/{to}:@{uid}/@{to} {src} {mp}", timeout=30).check()
    try:
        yield
    finally:
        node.run(f"fusermount -u {mp} || umount -l {mp}; umount {src}; rmdir {src}", timeout=30)
