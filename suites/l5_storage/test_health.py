"""Layer 5, server-side health from the filesystem's own tools: GlusterFS peers connected and
every brick online with ``free_space_gib_min`` free (``gluster … detail --xml``); BeeGFS
management, metadata and storage services registered and reachable, every target Online/Good
with that much free (``beegfs-ctl``, ``beegfs-df``, ``beegfs-check-servers``)."""

from __future__ import annotations

import pytest

from pytest_hpcvalidate.probes import storage
from pytest_hpcvalidate.capabilities import not_applicable

pytestmark = pytest.mark.requires("storage")


def _with_tool(cluster, candidates: list[str], tool: str):
    """The first of ``candidates`` that is a node of this cluster and has ``tool``; skip if none."""
    for name in candidates:
        try:
            node = cluster.node(name)
        except KeyError:
            continue
        if node.run(f"command -v {tool}", timeout=20).ok:
            return node
    pytest.skip(f"no node of {', '.join(candidates) or 'the cluster'} has {tool}: server health cannot be read here")


@pytest.mark.requires("root")
def test_glusterfs_peers_connected_and_every_brick_online_with_room(target, cluster):
    if target.kind != "glusterfs":
        not_applicable(f"{target.mount_point} is {target.kind}, not glusterfs")
    node = _with_tool(cluster, list(target.storage_nodes or target.nodes), "gluster")
    volume = target.source.split(":/", 1)[1] if target.source and ":/" in target.source else None
    problems, bricks = storage.gluster_health(node, volume, list(target.storage_nodes),
                                              target.thresholds.free_space_gib_min)
    assert bricks or problems, f"gluster on {node.name} lists no bricks for {volume or 'any volume'}"
    assert not problems, f"GlusterFS behind {target.mount_point} (as {node.name} sees it): " + "; ".join(problems)


@pytest.mark.requires("root")
def test_beegfs_services_reachable_and_targets_online_good(target, cluster):
    if target.kind != "beegfs" or target.beegfs is None:
        not_applicable(f"{target.mount_point} is {target.kind}, not beegfs")
    b = target.beegfs
    node = _with_tool(cluster, [b.management_node, *target.nodes], "beegfs-ctl")
    report = storage.beegfs_report(node, target.mount_point)
    problems = storage.beegfs_problems(report, b.management_node, b.metadata_nodes, b.storage_nodes,
                                       target.thresholds.free_space_gib_min)
    assert not problems, f"BeeGFS behind {target.mount_point} (read on {node.name}): " + "; ".join(problems)
