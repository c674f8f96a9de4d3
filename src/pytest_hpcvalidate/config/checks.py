"""Checks across fields that a per-field schema cannot express.

Each returns :class:`Problem` lines with the path of the field to fix, in our format's
terms (the seed loader maps them back to the seed's paths where it can).
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from typing import Any, Iterable

from ..hostlist import expand, fold
from .errors import Problem
from .model import ClusterConfig


def semantic_problems(cfg: ClusterConfig, other_networks: Iterable[tuple[str, Any]] = ()) -> list[Problem]:
    out: list[Problem] = []
    out += _node_problems(cfg)
    out += _network_problems(cfg, other_networks)
    out += _gres_problems(cfg)
    out += _partition_problems(cfg)
    out += _storage_problems(cfg)
    out += _signoff_problems(cfg)
    return out


def _node_problems(cfg: ClusterConfig) -> list[Problem]:
    out: list[Problem] = []
    nodes = cfg.resolved_nodes()
    by_name: dict[str, list[str]] = defaultdict(list)
    by_addr: dict[str, list[str]] = defaultdict(list)
    for n in nodes:
        by_name[n.name].append(n.origin)
        if n.address:
            by_addr[n.address].append(f"{n.origin} ({n.name})")
    for name, origins in by_name.items():
        if len(origins) > 1:
            out.append(Problem(origins[-1], f"duplicate node name '{name}' (also in {origins[0]}); node names must be unique"))
    for addr, owners in by_addr.items():
        if len(owners) > 1:
            out.append(Problem(owners[-1].split(" ")[0], f"duplicate address {addr} for {' and '.join(owners)}; give each node its own"))
    for gi, group in enumerate(cfg.compute):
        if group.addresses is not None and len(group.addresses) != len(group.node_names()):
            out.append(
                Problem(
                    f"compute[{gi}].addresses",
                    f"{len(group.addresses)} addresses for {len(group.node_names())} nodes; give one per node or leave it out",
                )
            )
    return out


def _network_problems(cfg: ClusterConfig, other_networks: Iterable[tuple[str, Any]]) -> list[Problem]:
    out: list[Problem] = []
    net = cfg.network.subnet
    reserved = {net.network_address, net.broadcast_address}
    if cfg.provider != "existing":  # the run builds the network: its bridge takes the host address
        reserved.add(cfg.network.host_address)
    if cfg.network.gateway is not None and cfg.network.gateway not in net:
        out.append(Problem("network.gateway", f"{cfg.network.gateway} is outside network.subnet {net}"))
    seen_origin: set[str] = set()
    for n in cfg.resolved_nodes():
        addr = ipaddress.IPv4Address(n.address) if n.address else None
        if addr is None:
            continue
        where = "controller.address" if n.role == "controller" else n.origin
        if addr not in net:
            if where not in seen_origin:
                out.append(
                    Problem(where, f"address {addr} of node {n.name} is outside network.subnet {net}; use a larger subnet or fewer nodes")
                )
                seen_origin.add(where)
        elif addr in reserved:
            what = "the host side of the bridge" if addr == cfg.network.host_address else "the network or broadcast address"
            out.append(Problem(where, f"address {addr} of node {n.name} is {what}; pick another"))
    for path, other in other_networks:
        if other.overlaps(net):
            out.append(Problem(path, f"subnet {other} overlaps network.subnet {net}; the networks must be disjoint"))
    return out


def _gres_problems(cfg: ClusterConfig) -> list[Problem]:
    out: list[Problem] = []
    groups = [("controller", cfg.controller)] + [(f"compute[{i}]", g) for i, g in enumerate(cfg.compute)]
    for where, g in groups:
        if g.gpus and g.gpus.count and "gpu" not in cfg.slurm.gres_types:
            out.append(
                Problem(f"{where}.gpus", f"{g.gpus.count} GPUs declared but slurm.gres_types does not include 'gpu'; add gres_types: [gpu]")
            )
    owner: dict[int, str] = {}
    for i, g in enumerate(cfg.compute):
        if g.gpus and g.gpus.host_devices is not None:
            want = g.gpus.count * len(g.node_names())
            if len(g.gpus.host_devices) != want:
                out.append(Problem(f"compute[{i}].gpus.host_devices", f"{len(g.gpus.host_devices)} devices for "
                                   f"{len(g.node_names())} node(s) x {g.gpus.count} GPUs; give {want}, or leave it out"))
    for name, devices in cfg.gpu_host_devices().items():
        for d in devices:
            if d in owner:
                out.append(Problem("compute.gpus.host_devices", f"/dev/nvidia{d} is given to both {owner[d]} and {name}; "
                                   "each host GPU can go to one node"))
            owner.setdefault(d, name)
    if "gpu" in cfg.slurm.gres_types and not any(g.gpus and g.gpus.count for _, g in groups):
        out.append(Problem("slurm.gres_types", "'gpu' is listed but no node declares gpus; add gpus to a compute group or drop it"))
    return out


def _partition_problems(cfg: ClusterConfig) -> list[Problem]:
    out: list[Problem] = []
    compute = {n.name for n in cfg.resolved_nodes() if n.role == "compute"}
    seen: set[str] = set()
    defaults = [i for i, p in enumerate(cfg.slurm.partitions) if p.default]
    if len(defaults) > 1:
        out.append(Problem(f"slurm.partitions[{defaults[1]}].default", "more than one default partition; mark exactly one"))
    for i, p in enumerate(cfg.slurm.partitions):
        if p.name in seen:
            out.append(Problem(f"slurm.partitions[{i}].name", f"duplicate partition '{p.name}'"))
        seen.add(p.name)
        out += _unknown_nodes(p.nodes, compute, f"slurm.partitions[{i}].nodes")
    if cfg.slurm.partition and cfg.slurm.partition not in seen:
        out.append(Problem("slurm.partition", f"'{cfg.slurm.partition}' is not a partition; one of: {', '.join(sorted(seen))}"))
    return out


def _unknown_nodes(expr: str, known: set[str], path: str) -> list[Problem]:
    if expr == "ALL":
        return []
    try:
        names = expand(expr)
    except ValueError as exc:
        return [Problem(path, str(exc))]
    missing = [n for n in names if n not in known]
    if missing:
        return [Problem(path, f"unknown node(s) {', '.join(missing[:5])}; known compute nodes: {_short_list(known)}")]
    return []


def _short_list(names: set[str]) -> str:
    return fold(names) or "(none)"


def _storage_problems(cfg: ClusterConfig) -> list[Problem]:
    out: list[Problem] = []
    all_nodes = {n.name for n in cfg.resolved_nodes()}
    compute = {n.name for n in cfg.resolved_nodes() if n.role == "compute"}
    mounts: dict[str, int] = {}
    for i, s in enumerate(cfg.storage):
        out += _unknown_nodes(s.nodes, compute | all_nodes, f"storage[{i}].nodes")
        if s.mount_point in mounts:
            out.append(Problem(f"storage[{i}].mount_point", f"{s.mount_point} is also storage[{mounts[s.mount_point]}]"))
        mounts[s.mount_point] = i
        for j, n in enumerate(s.storage_nodes):
            if n not in all_nodes:
                out.append(Problem(f"storage[{i}].storage_nodes[{j}]", f"unknown node '{n}'"))
        if s.kind == "beegfs" and s.beegfs is None:
            out.append(Problem(f"storage[{i}].beegfs", "kind beegfs needs a beegfs block (management_node, metadata_nodes, storage_nodes)"))
        if s.beegfs is not None:
            b = s.beegfs
            for field, names in (("management_node", [b.management_node]), ("metadata_nodes", b.metadata_nodes), ("storage_nodes", b.storage_nodes)):
                bad = [n for n in names if n not in all_nodes]
                if bad:
                    out.append(Problem(f"storage[{i}].beegfs.{field}", f"unknown node(s) {', '.join(bad)}"))
    return out


def _signoff_problems(cfg: ClusterConfig) -> list[Problem]:
    if cfg.signoff.required is None:
        return []
    declared = set(cfg.declared_areas())
    return [
        Problem(f"signoff.required[{i}]", f"'{a}' is required but the config declares nothing to check there; declare it or drop it")
        for i, a in enumerate(cfg.signoff.required)
        if a not in declared
    ]
