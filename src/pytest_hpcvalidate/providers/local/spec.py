"""The local provider's input: a flat, fully resolved description of the cluster to build.

The config layer (``config/``) turns a validated ``ClusterConfig`` into this (see
``providers/local/__init__.py``); the engine only ever sees a ``LocalSpec``. Everything here
is already checked (addresses inside the subnet, unique names, GPUs declared with GRES).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class NodeSpec:
    name: str                      # hostname, Slurm NodeName, namespace suffix
    role: Literal["controller", "compute", "login"]  # login: munged and sshd, no slurmd
    address: str                   # IPv4 on the cluster bridge, e.g. "10.77.0.11"
    cpus: int = 1                  # Slurm CPUs= (may exceed real cores; slurm.conf allows it)
    memory_mb: int = 1024          # Slurm RealMemory=
    gpus: int = 0                  # GPUs (simulated: char devices major 195, minors 0..gpus-1)
    gpu_type: str = "sim"          # GRES type (gres.conf Type=, slurm.conf Gres=gpu:<type>:<n>)
    gpu_host_devices: tuple[int, ...] = ()  # real GPUs: the host's /dev/nvidia<N> this node gets
    features: tuple[str, ...] = ()  # Slurm Features=


@dataclass(frozen=True)
class PartitionSpec:
    name: str
    nodes: list[str]               # compute node names
    default: bool = False
    max_time: str = "UNLIMITED"    # Slurm time format
    oversubscribe: bool = False    # OverSubscribe=FORCE:2 (jobs share CPUs on purpose)


@dataclass(frozen=True)
class LocalSpec:
    cluster: str                   # cluster name; [a-z0-9-], used in every resource name
    subnet: str                    # CIDR, e.g. "10.77.0.0/24"
    bridge: str                    # bridge device name (<= 15 chars)
    bridge_address: str            # host side address on the bridge, e.g. "10.77.0.1"
    mtu: int
    nodes: list[NodeSpec]
    partitions: list[PartitionSpec]
    mpi_default: str = "pmix"
    constrain_cores: bool = True
    constrain_ram: bool = True
    constrain_devices: bool = True
    accounting: bool = False       # slurmdbd + MariaDB (optional)
    #: users the nodes must know (slurm.users): in the nodes' own passwd/group (accounts.py)
    users: tuple[str, ...] = ()
    #: where the provider keeps configs, keys, logs, the state file (per cluster)
    work_dir: Path = Path("/var/lib/hpcvalidate/clusters/default")
    #: the directory bound into every node at the same path (the cluster's shared filesystem)
    shared_dir: Path = Path("/var/lib/hpcvalidate/clusters/default/shared")
    #: from starting Slurm's daemons to every compute node idle and every sshd listening, s
    ready_timeout_s: float = 60.0
    extra: dict = field(default_factory=dict)

    @property
    def controller(self) -> NodeSpec:
        return next(n for n in self.nodes if n.role == "controller")

    @property
    def compute(self) -> list[NodeSpec]:
        return [n for n in self.nodes if n.role == "compute"]
