"""Names of everything a local cluster creates, derived from the cluster and node names only.

Every host-visible resource carries the cluster name, so two clusters with different names
and subnets run side by side, and cleanup can find what a crashed run left:

- network namespace ``hpcv-<cluster>-<node>`` (``ip netns list``)
- cgroup subtree ``hpcv-<cluster>-<node>`` under every v1 controller (or the v2 root)
- host side of each veth ``hv<10 hex>`` (interface names are limited to 15 characters),
  with the interface alias ``hpcv:<cluster>`` on it and on the bridge (ownership marker)
"""

from __future__ import annotations

import hashlib

PREFIX = "hpcv"
#: the in-namespace side of every node's veth
NODE_IFACE = "eth0"


def netns_name(cluster: str, node: str) -> str:
    return f"{PREFIX}-{cluster}-{node}"


def cgroup_name(cluster: str, node: str) -> str:
    return f"{PREFIX}-{cluster}-{node}"


def veth_name(cluster: str, node: str) -> str:
    digest = hashlib.sha1(f"{cluster}/{node}".encode()).hexdigest()[:10]
    return f"hv{digest}"


def link_alias(cluster: str) -> str:
    """The ``ifalias`` put on the bridge and on every host-side veth: marks them as ours."""
    return f"{PREFIX}:{cluster}"
