"""The seed project's cluster YAML (ai-hyperscaler-on-workstation, ``version: "1.0"``).

Validated as written (errors carry the seed's own paths, ``clusters.hpc.compute_nodes[1].memory_gb``)
and then mapped onto :class:`ClusterConfig`. Node names follow ai-how: ``controller``,
``compute-01`` … (the names its ``storage.beegfs`` block refers to).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag

from .model import (
    BeegfsSpec,
    ClusterConfig,
    ComputeGroup,
    Controller,
    Gpus,
    Libvirt,
    Network,
    Partition,
    PciDevice,
    Slurm,
    Storage,
    Strict,
    VirtioFsMount,
)
from .types import IPv4Addr, IPv4Net, AbsPath, BridgeName, FileMode, HexId, PciAddress, SlurmTime, _pattern
from .types import Tag as MountTag

IpOrDhcp = Annotated[str, _pattern(r"^(DHCP|(\d{1,3}\.){3}\d{1,3})$", "an IPv4 address or DHCP")]

#: (vendor, device) -> GRES type for the GPUs the seed's configs name; others get "<vendor><device>"
KNOWN_GPUS = {
    ("10de", "2330"): "h100",
    ("10de", "2335"): "h200",
    ("10de", "20b0"): "a100",
    ("10de", "20b2"): "a100",
    ("10de", "26b9"): "l40s",
    ("10de", "2684"): "rtx4090",
    ("10de", "2805"): "rtx4060ti",
    ("10de", "2504"): "rtx3060",
    ("10de", "2789"): "rtx4060",
}


class SeedMetadata(Strict):
    name: str
    description: str


class SeedNetwork(Strict):
    subnet: IPv4Net
    bridge: BridgeName


class SeedVirtioFs(Strict):
    tag: MountTag
    host_path: AbsPath
    mount_point: AbsPath
    owner: str = "admin"
    group: str = "admin"
    mode: FileMode = "0755"
    options: str = "rw,relatime"


class SeedPciDevice(Strict):
    pci_address: PciAddress
    device_type: Literal["gpu", "audio", "network", "storage", "other"]
    vendor_id: HexId | None = None
    device_id: HexId | None = None
    iommu_group: int | None = Field(None, ge=0)


class SeedPcie(Strict):
    enabled: bool = False
    devices: list[SeedPciDevice] = Field(default_factory=list)


class SeedVm(Strict):
    cpu_cores: int = Field(ge=1)
    memory_gb: int = Field(ge=1)
    disk_gb: int = Field(ge=10)
    base_image_path: str | None = None
    virtio_fs_mounts: list[SeedVirtioFs] = Field(default_factory=list)


class SeedController(SeedVm):
    ip_address: IPv4Addr


class SeedComputeNode(SeedVm):
    ip: IpOrDhcp = "DHCP"
    pcie_passthrough: SeedPcie | None = None
    auto_start: bool = True


class SeedComputeCount(SeedComputeNode):
    count: int = Field(ge=1)


def _compute_kind(value: Any) -> str:
    return "~list" if isinstance(value, list) else "~count"


SeedCompute = Annotated[
    Union[
        Annotated[list[SeedComputeNode], Field(min_length=1), Tag("~list")],
        Annotated[SeedComputeCount, Tag("~count")],
    ],
    Discriminator(_compute_kind),
]


class SeedSlurm(Strict):
    partitions: list[str] = Field(min_length=1)
    default_partition: str
    max_job_time: SlurmTime = "UNLIMITED"


class SeedBeegfsClient(Strict):
    mount_options: str = "defaults,_netdev"
    auto_mount: bool = True


class SeedBeegfs(Strict):
    enabled: bool = False
    mount_point: AbsPath = "/mnt/beegfs"
    management_node: str = "controller"
    metadata_nodes: list[str] = Field(default_factory=lambda: ["controller"], min_length=1)
    storage_nodes: list[str] = Field(default_factory=lambda: ["compute-01"], min_length=1)
    client_config: SeedBeegfsClient = Field(default_factory=SeedBeegfsClient)


class SeedVirtioFsSwitch(Strict):
    enabled: bool = False


class SeedStorage(Strict):
    beegfs: SeedBeegfs | None = None
    virtio_fs: SeedVirtioFsSwitch | None = None


class SeedHpc(Strict):
    name: str
    base_image_path: str | None = None
    network: SeedNetwork
    hardware: dict = Field(default_factory=dict)
    controller: SeedController
    compute_nodes: SeedCompute
    slurm_config: SeedSlurm
    storage: SeedStorage | None = None


class SeedCloudNetwork(Strict):
    subnet: IPv4Net
    bridge: BridgeName


class SeedCloud(Strict):
    """Only what the HPC side needs from the cloud cluster: its network (for overlap checks)."""

    model_config = {"extra": "allow"}
    name: str
    network: SeedCloudNetwork


class SeedClusters(Strict):
    hpc: SeedHpc
    cloud: SeedCloud | None = None


class SeedConfig(Strict):
    version: Annotated[str, _pattern(r"^1\.0$", 'the seed format version "1.0"')]
    metadata: SeedMetadata
    clusters: SeedClusters
    global_: dict = Field(default_factory=dict, alias="global")


def is_seed_format(data: Any) -> bool:
    return isinstance(data, dict) and ("clusters" in data or "version" in data)


def _mounts(items: list[SeedVirtioFs]) -> list[VirtioFsMount]:
    return [VirtioFsMount(**m.model_dump()) for m in items]


def _gpus_of(node: SeedComputeNode) -> tuple[Gpus | None, list[PciDevice]]:
    pcie = node.pcie_passthrough
    if not pcie or not pcie.enabled:
        return None, []
    devices = [PciDevice(**d.model_dump()) for d in pcie.devices]
    gpus = [d for d in pcie.devices if d.device_type == "gpu"]
    if not gpus:
        return None, devices
    first = gpus[0]
    gtype = KNOWN_GPUS.get(((first.vendor_id or "").lower(), (first.device_id or "").lower()))
    gtype = gtype or f"{first.vendor_id or 'pci'}{first.device_id or ''}".lower()
    return Gpus(count=len(gpus), type=gtype, simulated=False), devices


def to_cluster_config(seed: SeedConfig) -> tuple[ClusterConfig, list[tuple[str, Any]]]:
    """Map the seed model onto ours. Also returns (path, subnet) of other networks it declares."""
    hpc = seed.clusters.hpc
    ctl = hpc.controller
    groups: list[ComputeGroup] = []
    if isinstance(hpc.compute_nodes, SeedComputeCount):
        c = hpc.compute_nodes
        gpus, pcie = _gpus_of(c)
        width = max(2, len(str(c.count)))
        names = f"compute-[{1:0{width}d}-{c.count:0{width}d}]" if c.count > 1 else "compute-01"
        groups.append(
            ComputeGroup(
                names=names, cpus=c.cpu_cores, memory_mb=c.memory_gb * 1024, disk_gb=c.disk_gb,
                gpus=gpus, pcie_passthrough=pcie, virtio_fs_mounts=_mounts(c.virtio_fs_mounts),
            )
        )
    else:
        for i, n in enumerate(hpc.compute_nodes, start=1):
            gpus, pcie = _gpus_of(n)
            groups.append(
                ComputeGroup(
                    names=f"compute-{i:02d}", cpus=n.cpu_cores, memory_mb=n.memory_gb * 1024, disk_gb=n.disk_gb,
                    gpus=gpus, pcie_passthrough=pcie, virtio_fs_mounts=_mounts(n.virtio_fs_mounts),
                    addresses=None if n.ip == "DHCP" else [n.ip],
                )
            )
    has_gpu = any(g.gpus and g.gpus.count for g in groups)
    partitions = [
        Partition(name=p, default=(p == hpc.slurm_config.default_partition), max_time=hpc.slurm_config.max_job_time)
        for p in hpc.slurm_config.partitions
    ]
    storage: list[Storage] = []
    if hpc.storage and hpc.storage.beegfs and hpc.storage.beegfs.enabled:
        b = hpc.storage.beegfs
        storage.append(
            Storage(
                kind="beegfs", mount_point=b.mount_point,
                beegfs=BeegfsSpec(
                    management_node=b.management_node, metadata_nodes=b.metadata_nodes,
                    storage_nodes=b.storage_nodes, mount_options=b.client_config.mount_options,
                ),
            )
        )
    cfg = ClusterConfig(
        name=_cluster_name(hpc.name),
        provider="libvirt",
        description=seed.metadata.description,
        network=Network(subnet=hpc.network.subnet, bridge=hpc.network.bridge),
        controller=Controller(
            name="controller", cpus=ctl.cpu_cores, memory_mb=ctl.memory_gb * 1024, disk_gb=ctl.disk_gb,
            address=ctl.ip_address, virtio_fs_mounts=_mounts(ctl.virtio_fs_mounts),
        ),
        compute=groups,
        slurm=Slurm(partitions=partitions, gres_types=["gpu"] if has_gpu else []),
        storage=storage,
        libvirt=Libvirt(base_image=hpc.base_image_path, hardware=hpc.hardware),
    )
    others = []
    if seed.clusters.cloud is not None:
        others.append(("clusters.cloud.network.subnet", seed.clusters.cloud.network.subnet))
    return cfg, others


def _cluster_name(name: str) -> str:
    import re

    cleaned = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return (cleaned if cleaned[:1].isalpha() else f"c-{cleaned}")[:24] or "seed"
