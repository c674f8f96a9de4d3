"""The local provider: the config's cluster as Linux namespaces on this machine.

This module is the seam between the config model and the engine: it flattens a validated
``ClusterConfig`` into a :class:`LocalSpec` and drives ``engine.LocalCluster``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from pathlib import Path

from ...hostlist import expand
from ..base import EngineProvider
from .spec import LocalSpec, NodeSpec, PartitionSpec

#: every local cluster lives under here (state file, configs, keys, logs, shared dir)
STATE_ROOT = Path(os.environ.get("HPCV_STATE_ROOT", "/var/lib/hpcvalidate/clusters"))


def spec_from_config(model, state_root: Path = STATE_ROOT) -> LocalSpec:
    nodes = model.resolved_nodes()
    compute = [n.name for n in nodes if n.role == "compute"]
    partitions = [
        PartitionSpec(
            name=p.name,
            nodes=compute if p.nodes == "ALL" else expand(p.nodes),
            default=p.default,
            max_time=p.max_time or "UNLIMITED",
            oversubscribe=p.oversubscribe,
        )
        for p in model.slurm.partitions
    ]
    if not any(p.default for p in partitions):
        partitions[0] = dataclasses.replace(partitions[0], default=True)
    work_dir = state_root / model.name
    net = model.network
    real_gpus = model.gpu_host_devices() if model.provider == "local" else {}  # VMs number their own
    return LocalSpec(
        cluster=model.name,
        subnet=str(net.subnet),
        bridge=net.bridge,
        bridge_address=str(net.host_address),
        mtu=net.mtu,
        nodes=[
            NodeSpec(name=n.name, role=n.role, address=n.address, cpus=n.cpus, memory_mb=n.memory_mb,
                     gpus=n.gpus, gpu_type=n.gpu_type or "sim", gpu_host_devices=real_gpus.get(n.name, ()),
                     features=n.features or ())
            for n in nodes
        ],
        partitions=partitions,
        mpi_default=model.slurm.mpi_default,
        constrain_cores=model.slurm.cgroup.constrain_cores,
        constrain_ram=model.slurm.cgroup.constrain_ram_space,
        constrain_devices=model.slurm.cgroup.constrain_devices,
        accounting=model.slurm.accounting,
        users=tuple(model.slurm.users),
        work_dir=work_dir,
        shared_dir=work_dir / "shared",
        # a slow registration is the L2 check's to report (against node_register_s_max), not a
        # provisioning failure before it: wait at least that long
        ready_timeout_s=max(LocalSpec.ready_timeout_s, model.thresholds.node_register_s_max),
        # the sections addons read (providers/local/addons): validated, as plain data
        extra={
            "storage": [s.model_dump(mode="json") for s in model.storage],
            "containers": model.containers.model_dump(mode="json") if model.containers else None,
            "monitoring": {**model.monitoring.model_dump(mode="json"), "nodes": model.monitored_nodes(),
                           "prometheus_node": model.prometheus_node(),
                           "alertmanager_node": model.alertmanager_node()} if model.monitoring else None,
        },
    )


def prefix_len(subnet: str) -> int:
    return ipaddress.ip_network(subnet).prefixlen


class LocalProvider(EngineProvider):
    kind = "local"

    def default_state_root(self) -> Path:
        return STATE_ROOT

    def make_engine(self, model):
        from .engine import LocalCluster

        return LocalCluster(spec_from_config(model, self.state_root))
