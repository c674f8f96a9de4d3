"""``existing.discover: slurm``: the compute nodes of an existing cluster, read from its controller.

Runs before collection (the per-node checks are parametrized over the nodes), so it turns
the config into a complete one: every node ``scontrol show node`` lists becomes a compute
node with its ``NodeAddr``. What the config states about a node stays an assertion; what it
leaves out (CPUs, memory, GPUs, and the partitions when ``slurm.partitions`` is not given) is
taken from Slurm, so those checks assert only what the operator wrote. A node the config
names that Slurm does not know stays in, without an address: its checks report it.
"""

from __future__ import annotations

import ipaddress
import socket

from pydantic import ValidationError

from ..probes import slurm
from ..transport import TransportError
from .base import ProvisioningError

#: a compute group's keys that name or place its nodes (replaced per discovered node)
_NOT_FACTS = {"names", "count", "prefix", "first_address", "addresses"}


def _address(node: slurm.SlurmNode) -> str:
    """NodeAddr as an IPv4 address (a name is resolved here, as SSH would resolve it)."""
    addr = node.address or node.name
    try:
        return str(ipaddress.IPv4Address(addr))
    except ValueError:
        pass
    try:
        return socket.getaddrinfo(addr, None, socket.AF_INET)[0][4][0]
    except OSError as exc:
        raise ProvisioningError(
            f"discover: slurm: NodeAddr {addr!r} of {node.name} does not resolve here: {exc}") from None


def _gpus(node: slurm.SlurmNode) -> dict | None:
    """``gpu:h100:2`` → {count: 2, type: h100}; no GPU GRES → None."""
    for key, count in node.gres.items():
        if key == "gpu" or key.startswith("gpu:"):
            kind = key.split(":")[1] if ":" in key else "gpu"
            return {"count": node.gpu_count(), "type": kind}
    return None


def compute_groups(model, found: dict[str, slurm.SlurmNode]) -> list[dict]:
    """One compute group per node: the config's stated facts over Slurm's."""
    configured = {name: g for g in model.compute for name in g.node_names()}
    groups = []
    for name, sn in found.items():
        group = configured.get(name)
        stated = group.model_dump(exclude_unset=True, exclude=_NOT_FACTS) if group else {}
        reported = {"cpus": sn.cpus, "memory_mb": sn.real_memory_mb, "gpus": _gpus(sn)}
        entry = {**{k: v for k, v in reported.items() if v is not None}, **stated, "names": name}
        addresses = group.addresses if group is not None and group.addresses else None
        if addresses is not None:
            entry["addresses"] = [str(addresses[group.node_names().index(name)])]
        else:
            entry["addresses"] = [_address(sn)]
        groups.append(entry)
    for name, group in configured.items():
        if name not in found:  # expected but unknown to Slurm: kept, without an address
            stated = group.model_dump(exclude_unset=True, exclude=_NOT_FACTS)
            groups.append({**stated, "names": name, "addresses": []})
    return groups


def partitions(found: dict[str, slurm.SlurmPartition]) -> list[dict]:
    return [{"name": p.name, "nodes": p.nodes or "ALL", "default": p.default, "max_time": p.max_time or "UNLIMITED"}
            for p in found.values()]


def discover(model, controller) -> object:
    """``model`` completed from what ``controller`` (a Node or Transport) reports."""
    try:
        nodes_out = controller.run("scontrol show node -o", timeout=60)
        parts_out = controller.run("scontrol show partition -o", timeout=60)
    except TransportError as exc:
        raise ProvisioningError(f"discover: slurm: cannot reach the controller: {exc}") from None
    for r in (nodes_out, parts_out):
        if not r.ok:
            raise ProvisioningError(f"discover: slurm: {r.describe()}")
    found = slurm.parse_nodes(nodes_out.stdout)
    if not found:
        raise ProvisioningError(f"discover: slurm: `scontrol show node` on {controller.node} lists no nodes")
    data = model.model_dump(mode="json", exclude_unset=True, by_alias=True)
    data["compute"] = compute_groups(model, found)
    slurm_cfg = data.setdefault("slurm", {})
    if "partitions" not in model.slurm.model_fields_set:
        slurm_cfg["partitions"] = partitions(slurm.parse_partitions(parts_out.stdout))
    if any(g.get("gpus") for g in data["compute"]) and "gres_types" not in model.slurm.model_fields_set:
        slurm_cfg["gres_types"] = ["gpu"]
    try:
        discovered = type(model).model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ProvisioningError(
            f"discover: slurm: what Slurm reports does not fit the config model: {where}: {first['msg']}") from None
    problems = discovered.unknown_node_names()  # now that the nodes are known: names Slurm does not have
    if problems:
        raise ProvisioningError(f"discover: slurm: {problems[0]} (the nodes are those Slurm reports and the config lists)")
    return discovered
