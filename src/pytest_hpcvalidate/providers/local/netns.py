"""The cluster network: a bridge on the host, a network namespace and a veth pair per node.

Everything goes through iproute2's ``ip -batch`` (one process for the whole cluster, not one
per link). The host side of each veth and the bridge carry the alias ``hpcv:<cluster>``;
a bridge without it is not ours and is never touched.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from pathlib import Path

from .naming import NODE_IFACE, link_alias, netns_name, veth_name
from .spec import LocalSpec, NodeSpec

NETNS_DIR = Path("/run/netns")


class IpError(RuntimeError):
    pass


def ip_batch(lines: list[str], force: bool = False, netns: str | None = None) -> subprocess.CompletedProcess:
    """Run ``ip -batch -`` on ``lines``; ``force`` keeps going after a failing line."""
    argv = ["ip"]
    if netns:
        argv += ["-n", netns]
    if force:
        argv.append("-force")
    argv += ["-batch", "-"]
    return subprocess.run(argv, input="\n".join(lines) + "\n", capture_output=True, text=True)


def ip_json(*args: str) -> list[dict]:
    proc = subprocess.run(["ip", "-j", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise IpError(f"ip -j {' '.join(args)}: {proc.stderr.strip()}")
    out = proc.stdout.strip()
    return json.loads(out) if out else []


def prefixlen(subnet: str) -> int:
    return ipaddress.ip_network(subnet, strict=False).prefixlen


# -- creation ------------------------------------------------------------------------------

def bridge_lines(spec: LocalSpec) -> list[str]:
    br = spec.bridge
    return [
        f"link add {br} type bridge forward_delay 0",
        f"link set dev {br} mtu {spec.mtu} alias {link_alias(spec.cluster)}",
        f"addr add {spec.bridge_address}/{prefixlen(spec.subnet)} dev {br}",
        f"link set dev {br} up",
    ]


def node_host_lines(spec: LocalSpec, node: NodeSpec) -> list[str]:
    """Lines run on the host: the namespace and the veth pair, host side on the bridge."""
    ns = netns_name(spec.cluster, node.name)
    veth = veth_name(spec.cluster, node.name)
    return [
        f"netns add {ns}",
        f"link add {veth} mtu {spec.mtu} type veth peer name {NODE_IFACE} mtu {spec.mtu} netns {ns}",
        f"link set dev {veth} master {spec.bridge} alias {link_alias(spec.cluster)} up",
    ]


def node_inside_lines(spec: LocalSpec, node: NodeSpec) -> list[str]:
    """Lines run inside the node's namespace: loopback up, the node's address on eth0."""
    return [
        "link set dev lo up",
        f"addr add {node.address}/{prefixlen(spec.subnet)} dev {NODE_IFACE}",
        f"link set dev {NODE_IFACE} up",
    ]


# -- removal -------------------------------------------------------------------------------

def delete_lines(veths: list[str], namespaces: list[str], bridge: str | None) -> list[str]:
    """Removal lines, run with ``force``: host-side veths first (synchronous), then namespaces."""
    present_links = {link["ifname"] for link in _links_or_empty()}
    present_ns = list_netns()
    lines = [f"link del dev {v}" for v in veths if v in present_links]
    lines += [f"netns del {ns}" for ns in namespaces if ns in present_ns]
    if bridge and bridge in present_links:
        lines.append(f"link del dev {bridge}")
    return lines


# -- queries -------------------------------------------------------------------------------

def list_netns() -> set[str]:
    try:
        return set(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return set()


def netns_inode(name: str) -> int | None:
    try:
        return os.stat(NETNS_DIR / name).st_ino
    except OSError:
        return None


def _links_or_empty() -> list[dict]:
    try:
        return ip_json("link", "show")
    except (IpError, FileNotFoundError, json.JSONDecodeError):
        return []


def links() -> list[dict]:
    return ip_json("link", "show")


def link(name: str) -> dict | None:
    return next((lk for lk in _links_or_empty() if lk.get("ifname") == name), None)


def links_with_alias(alias: str) -> list[str]:
    return [lk["ifname"] for lk in _links_or_empty() if lk.get("ifalias") == alias]


def subnet_conflicts(spec: LocalSpec) -> list[str]:
    """Routes and addresses on the host that overlap the cluster subnet and are not ours."""
    net = ipaddress.ip_network(spec.subnet, strict=False)
    ours = {spec.bridge}
    problems: list[str] = []
    for route in ip_json("-4", "route", "show", "table", "all"):
        dst = route.get("dst", "")
        if dst in ("default", "") or route.get("type") in ("local", "broadcast", "multicast"):
            continue
        try:
            other = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if other.overlaps(net) and route.get("dev") not in ours:
            problems.append(f"route {dst} dev {route.get('dev', '?')}")
    for iface in ip_json("-4", "addr", "show"):
        if iface.get("ifname") in ours:
            continue
        for a in iface.get("addr_info", []):
            try:
                if ipaddress.ip_address(a["local"]) in net:
                    problems.append(f"address {a['local']} on {iface.get('ifname')}")
            except (KeyError, ValueError):
                continue
    return problems
