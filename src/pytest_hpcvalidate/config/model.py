"""The cluster model: one typed description of the cluster to provision (or attach to)
and of what a run must prove about it.

Both input formats (ours and the seed project's ``version: "1.0"`` cluster YAML) end up as a
:class:`ClusterConfig`. Every threshold a suite asserts lives in :class:`Thresholds`, with its
default and unit in the field description (which is also the JSON Schema documentation).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .areas import AREAS
from ..hostlist import expand as expand_hostlist
from .types import (
    IPv4Addr,
    IPv4Net,
    AbsPath,
    BridgeName,
    ClusterName,
    FileMode,
    GresType,
    HexId,
    NodeName,
    PciAddress,
    Sha256,
    SlurmTime,
    Tag,
    Version,
)

Area = Literal["network", "pcie", "gpu", "slurm", "gres", "cgroup", "mpi", "containers", "storage"]
assert set(Area.__args__) == set(AREAS)  # type: ignore[attr-defined]


class Strict(BaseModel):
    """Unknown keys are errors (reported with a "did you mean")."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


# --------------------------------------------------------------------------- network
class Network(Strict):
    subnet: IPv4Net = Field(description="Cluster network (CIDR), e.g. 10.77.0.0/24.")
    bridge: BridgeName = Field(description="Bridge the nodes are attached to (host side).")
    mtu: int = Field(1500, ge=576, le=9216, description="MTU every node interface must have.")
    gateway: IPv4Addr | None = Field(
        None, description="Host-side address on the bridge; default: the first address of the subnet."
    )
    domain: str | None = Field(None, description="DNS domain the node names resolve in, if any.")

    @property
    def host_address(self) -> IPv4Addr:
        return self.gateway or next(self.subnet.hosts())


# --------------------------------------------------------------------------- nodes
class Gpus(Strict):
    count: int = Field(ge=0, le=64, description="GPUs per node.")
    type: GresType = Field("sim", description="GRES type in gres.conf / slurm.conf (gpu:<type>:<count>).")
    model: str | None = Field(None, description="Model name NVML must report, e.g. 'NVIDIA H100 80GB HBM3'.")
    simulated: bool | None = Field(
        None, description="Device nodes that look like NVIDIA's (major 195), no hardware (local provider). "
        "Default: true when type is 'sim'.",
    )


class PciDevice(Strict):
    pci_address: PciAddress
    device_type: Literal["gpu", "audio", "network", "storage", "other"] = "gpu"
    vendor_id: HexId | None = None
    device_id: HexId | None = None
    iommu_group: int | None = Field(None, ge=0)
    host_driver: str = Field("vfio-pci", description="Driver the host must have bound for passthrough.")


class VirtioFsMount(Strict):
    tag: Tag
    host_path: AbsPath
    mount_point: AbsPath
    owner: str = "root"
    group: str = "root"
    mode: FileMode = "0755"
    options: str = "rw,relatime"
    cache: Literal["auto", "always", "none"] = "auto"


class NodeResources(Strict):
    cpus: int = Field(1, ge=1, le=4096, description="CPUs Slurm must report (CPUs=).")
    memory_mb: int = Field(1024, ge=64, le=64 * 1024 * 1024, description="RealMemory Slurm must report, MiB.")
    disk_gb: int | None = Field(None, ge=1, description="Root disk size (libvirt provider).")
    gpus: Gpus | None = None
    pcie_passthrough: list[PciDevice] = Field(default_factory=list)
    virtio_fs_mounts: list[VirtioFsMount] = Field(default_factory=list)


class Controller(NodeResources):
    name: NodeName = "ctl"
    address: IPv4Addr | None = Field(None, description="Default: the subnet's 10th host address.")


class ComputeGroup(NodeResources):
    """A group of identical compute nodes: ``names`` (a hostlist) or ``count`` + ``prefix``."""

    names: str | None = Field(None, description="Hostlist of node names, e.g. c[01-04],gpu1.")
    count: int | None = Field(None, ge=1, le=100_000, description="Number of nodes named <prefix><i>.")
    prefix: NodeName = "c"
    first_address: IPv4Addr | None = Field(
        None, description="Address of the first node; the others follow. Default: after the previous group."
    )
    addresses: list[IPv4Addr] | None = Field(None, description="Explicit address per node, in name order.")

    @model_validator(mode="after")
    def _names_or_count(self) -> "ComputeGroup":
        if (self.names is None) == (self.count is None):
            raise ValueError("give either 'names' (a hostlist like c[1-4]) or 'count', not both or neither")
        if self.names is not None:
            expand_hostlist(self.names)  # raises ValueError with the reason
        return self

    def node_names(self) -> list[str]:
        if self.names is not None:
            return expand_hostlist(self.names)
        assert self.count is not None
        return [f"{self.prefix}{i}" for i in range(1, self.count + 1)]


# --------------------------------------------------------------------------- slurm
class Partition(Strict):
    name: NodeName
    nodes: str = Field("ALL", description="Hostlist of compute nodes, or ALL.")
    default: bool = False
    max_time: SlurmTime = "UNLIMITED"


class CgroupConstraints(Strict):
    constrain_cores: bool = True
    constrain_ram_space: bool = True
    constrain_devices: bool = True


class Slurm(Strict):
    partitions: list[Partition] = Field(
        default_factory=lambda: [Partition(name="debug", default=True)], min_length=1
    )
    gres_types: list[GresType] = Field(default_factory=list, description="GresTypes=; must include gpu when nodes have GPUs.")
    cgroup: CgroupConstraints = Field(default_factory=CgroupConstraints)
    mpi_default: Literal["pmix", "pmi2", "none"] = "pmix"
    accounting: bool = Field(False, description="slurmdbd + MariaDB job accounting.")
    account: str | None = Field(None, description="Account for jobs the run submits (existing clusters).")
    qos: str | None = None
    partition: str | None = Field(None, description="Partition the run's jobs go to; default: the default partition.")
    job_shape_examples: int = Field(
        8, ge=0, le=1000, description="Random job shapes the property-based placement check submits (default 8; 0 = off)."
    )

    @property
    def default_partition(self) -> Partition:
        return next((p for p in self.partitions if p.default), self.partitions[0])


# --------------------------------------------------------------------------- containers
class ContainerExpect(Strict):
    os_release: str | None = Field(None, description="Substring of the image's PRETTY_NAME, e.g. 'Debian GNU/Linux 12'.")
    python: Version | None = None
    torch: Version | None = None


class Containers(Strict):
    runtime: Literal["apptainer", "singularity", "charliecloud", "slurm-oci"]
    image: AbsPath = Field(description="SIF file, directory image or OCI bundle on a path every compute node sees.")
    sha256: Sha256 | None = None
    min_version: Version | None = Field(None, description="Lowest acceptable runtime version (seed: Apptainer >= 1.4.2).")
    build_test_image: bool = Field(False, description="Local provider: build a small test image offline.")
    expect: ContainerExpect = Field(default_factory=ContainerExpect)


# --------------------------------------------------------------------------- storage
class StorageThresholds(Strict):
    seq_write_mibps_min: float = Field(50.0, ge=0, description="Sequential 1 MiB write per node, MiB/s (default 50).")
    seq_read_mibps_min: float = Field(50.0, ge=0, description="Sequential 1 MiB read per node, MiB/s (default 50).")
    aggregate_write_mibps_min: float | None = Field(None, ge=0, description="All nodes at once, MiB/s (default: none).")
    aggregate_read_mibps_min: float | None = Field(None, ge=0, description="All nodes at once, MiB/s (default: none).")
    rand_read_iops_min: float = Field(500.0, ge=0, description="4 KiB random read IOPS per node (default 500).")
    metadata_ops_min: float = Field(100.0, ge=0, description="Small-file create+stat+unlink per second (default 100).")
    free_space_gib_min: float = Field(1.0, ge=0, description="Free space on the mount, GiB (seed: 1 GiB).")
    coherency_s_max: float = Field(5.0, gt=0, description="A write on one node visible on another within, s (default 5).")


class BeegfsSpec(Strict):
    management_node: NodeName = "ctl"
    metadata_nodes: list[NodeName] = Field(min_length=1)
    storage_nodes: list[NodeName] = Field(min_length=1)
    mount_options: str = "defaults,_netdev"


class Storage(Strict):
    kind: Literal["beegfs", "glusterfs", "nfs", "lustre", "virtiofs", "generic"]
    mount_point: AbsPath
    nodes: str = Field("ALL", description="Hostlist of nodes that must mount it, or ALL (every compute node).")
    source: str | None = Field(None, description="Expected mount source (e.g. server:/volume).")
    storage_nodes: list[NodeName] = Field(default_factory=list, description="Local provider: nodes serving bricks.")
    beegfs: BeegfsSpec | None = None
    thresholds: StorageThresholds = Field(default_factory=StorageThresholds)


# --------------------------------------------------------------------------- thresholds
class Thresholds(Strict):
    """Every number a suite asserts. Defaults suit the local provider; tighten for real fabrics."""

    ping_loss_max_pct: float = Field(0.0, ge=0, le=100, description="Packet loss between any two nodes, % (default 0).")
    latency_p50_ms_max: float = Field(1.0, gt=0, description="Node-to-node ping round trip, median, ms (default 1).")
    latency_p99_ms_max: float = Field(5.0, gt=0, description="Node-to-node ping round trip, p99, ms (default 5).")
    bandwidth_gbps_min: float = Field(1.0, ge=0, description="iperf3 TCP between a node pair, Gbit/s (default 1).")
    bandwidth_seconds: float = Field(1.0, gt=0, le=60, description="How long each iperf3 measurement runs, s (default 1).")
    bandwidth_pairs_max: int = Field(16, ge=1, description="Node pairs sampled for bandwidth on large clusters (default 16).")
    ssh_connect_s_max: float = Field(5.0, gt=0, description="Opening an SSH session to a node, s (default 5).")
    node_register_s_max: float = Field(60.0, gt=0, description="Waiting for every node to register in Slurm, s (default 60).")
    job_start_s_max: float = Field(30.0, gt=0, description="A one-step job on every node completes within, s (default 30).")
    mpi_latency_us_max: float = Field(100.0, gt=0, description="MPI ping-pong half round trip, 8 B, µs (default 100).")
    mpi_bandwidth_mibps_min: float = Field(100.0, ge=0, description="MPI ping-pong bandwidth, 1 MiB messages, MiB/s (default 100).")
    provision_s_max: float | None = Field(None, gt=0, description="Provisioning the cluster, s (default: not asserted).")
    regression_tolerance_pct: float = Field(
        10.0, ge=0, description="With --hpc-baseline: a metric worse than the baseline by more than this fails, % (default 10)."
    )


class Signoff(Strict):
    required: list[Area] | None = Field(
        None, description="Areas that must PASS for sign-off. Default: every area the config declares."
    )


# --------------------------------------------------------------------------- access / providers
class SSHAccess(Strict):
    user: str = "root"
    port: int = Field(22, ge=1, le=65535)
    key_file: str | None = None
    known_hosts: str | None = None
    host_key_policy: Literal["strict", "accept-new"] = "strict"
    jump: str | None = Field(None, description="ProxyJump host, user@host[:port].")
    ssh_config: str | None = Field(None, description="OpenSSH client config to honour (default ~/.ssh/config).")
    connect_timeout_s: float = Field(10.0, gt=0)
    command_timeout_s: float = Field(300.0, gt=0)


class Libvirt(Strict):
    uri: str = "qemu:///system"
    domain_type: Literal["auto", "kvm", "qemu"] = "auto"
    base_image: str | None = None
    hardware: dict = Field(default_factory=dict, description="The seed's hardware.acceleration block, kept as is.")


# --------------------------------------------------------------------------- root
@dataclass(frozen=True)
class ResolvedNode:
    """A node with every default applied: what providers build and suites assert."""

    name: str
    role: Literal["controller", "compute"]
    address: str
    cpus: int
    memory_mb: int
    gpus: int
    gpu_type: str
    gpu_model: str | None
    #: the GPUs are device nodes without hardware (local provider): GRES and isolation are
    #: checked on them, NVML/PCIe health is not applicable
    gpu_simulated: bool
    pcie: tuple[PciDevice, ...]
    virtio_fs: tuple[VirtioFsMount, ...]
    #: where in the config this node came from, for error messages ("compute[1]")
    origin: str


class ClusterConfig(Strict):
    name: ClusterName
    provider: Literal["local", "libvirt", "existing"] = "local"
    description: str = ""
    network: Network
    controller: Controller = Field(default_factory=Controller)
    compute: list[ComputeGroup] = Field(min_length=1)
    slurm: Slurm = Field(default_factory=Slurm)
    containers: Containers | None = None
    storage: list[Storage] = Field(default_factory=list)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    signoff: Signoff = Field(default_factory=Signoff)
    ssh: SSHAccess = Field(default_factory=SSHAccess)
    libvirt: Libvirt | None = None

    # ----------------------------------------------------------------- derived facts
    def resolved_nodes(self) -> list[ResolvedNode]:
        """Controller first, then compute nodes in config order, with addresses assigned."""
        base = int(self.network.subnet.network_address)
        ctl_addr = str(self.controller.address or ipaddress.IPv4Address(base + 10))
        out = [self._resolve(self.controller.name, "controller", ctl_addr, self.controller, "controller")]
        next_addr = int(ipaddress.IPv4Address(ctl_addr)) + 1
        for gi, group in enumerate(self.compute):
            names = group.node_names()
            if group.addresses is not None:
                addrs = [str(a) for a in group.addresses]
            else:
                start = int(group.first_address) if group.first_address else next_addr
                addrs = [str(ipaddress.IPv4Address(start + i)) for i in range(len(names))]
            for i, name in enumerate(names):
                addr = addrs[i] if i < len(addrs) else ""
                out.append(self._resolve(name, "compute", addr, group, f"compute[{gi}]"))
            if addrs:
                next_addr = max(next_addr, int(ipaddress.IPv4Address(addrs[-1])) + 1)
        return out

    @staticmethod
    def _resolve(name: str, role, address: str, res: NodeResources, origin: str) -> ResolvedNode:
        g = res.gpus
        return ResolvedNode(
            name=name,
            role=role,
            address=address,
            cpus=res.cpus,
            memory_mb=res.memory_mb,
            gpus=g.count if g else 0,
            gpu_type=g.type if g else "",
            gpu_model=g.model if g else None,
            gpu_simulated=bool(g and (g.simulated if g.simulated is not None else g.type == "sim")),
            pcie=tuple(res.pcie_passthrough),
            virtio_fs=tuple(res.virtio_fs_mounts),
            origin=origin,
        )

    def declared_areas(self) -> list[str]:
        """The areas this config gives something to check in, in layer order."""
        nodes = self.resolved_nodes()
        areas = ["network", "slurm", "cgroup", "mpi"]
        if any(n.pcie for n in nodes):
            areas.append("pcie")
        if any(n.gpus for n in nodes):
            areas.append("gres")
        if any(n.gpus and not n.gpu_simulated for n in nodes):
            areas.append("gpu")
        if self.containers is not None:
            areas.append("containers")
        if self.storage or any(n.virtio_fs for n in nodes):
            areas.append("storage")
        return [a for a in AREAS if a in areas]

    def required_areas(self) -> list[str]:
        if self.signoff.required is None:
            return self.declared_areas()
        return [a for a in AREAS if a in self.signoff.required]
