"""The cluster model: one typed description of the cluster to provision (or attach to)
and of what a run must prove about it.

Both input formats (ours and the seed project's ``version: "1.0"`` cluster YAML) end up as a
:class:`ClusterConfig`. Every threshold a suite asserts lives in :class:`Thresholds`, with its
default and unit in the field description (which is also the JSON Schema documentation).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .areas import AREAS
from ..hostlist import expand as expand_hostlist
from ..probes.nodeimage import DEFAULT_SYSCTLS, LOGIN_PACKAGES
from .types import (
    ModuleName,
    SlurmFeature,
    SysctlName,
    TaintLetters,
    IPv4Addr,
    UserName,
    IPv4Net,
    AbsPath,
    BridgeName,
    ClusterName,
    FileMode,
    GresType,
    HexId,
    HttpUrl,
    MetricName,
    NodeName,
    PciAddress,
    Sha256,
    SlurmTime,
    Tag,
    Version,
)

Area = Literal["nodes", "network", "pcie", "gpu", "slurm", "gres", "cgroup", "mpi", "containers", "storage", "monitoring"]
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
    # health expectations of real GPUs; defaults per model in config/gpu_models.py
    min_driver_version: Version | None = Field(
        None, description="Lowest acceptable NVIDIA driver, e.g. 535.104.05. Default: the first driver that "
        "supports the model (config/gpu_models.py); not checked for models not in that table.")
    ecc_required: bool | None = Field(
        None, description="ECC must be on (true) or off (false). Default: on for HBM models (H100, A100, ...), "
        "not checked for others.")
    ecc_uncorrected_max: int = Field(0, ge=0, description="Uncorrected volatile ECC errors allowed per GPU (default 0).")
    persistence_mode: bool | None = Field(
        True, description="Persistence mode must be on (true) or off (false); null: not checked. Default on, as "
        "NVIDIA recommends for compute nodes.")
    pcie_gen: int | None = Field(None, ge=1, le=6, description="Expected PCIe generation. Default: the model's.")
    pcie_width: Literal[1, 2, 4, 8, 16, 32] | None = Field(
        None, description="Expected PCIe link width (lanes). Default: the model's.")
    driver: str = Field("nvidia", description="Kernel driver the GPUs must be bound to on the node.")
    python: str = Field(
        "python3", min_length=1, pattern=r"^[A-Za-z0-9_./+-]+$",
        description="The Python on these nodes that has pynvml and torch, for the NVML and PyTorch checks "
        "(on the node and inside its jobs), e.g. /opt/torch/.venv/bin/python3. Default: python3 from the PATH.")
    host_devices: list[Annotated[int, Field(ge=0, le=255)]] | None = Field(
        None, description="Local provider, real GPUs: the host's /dev/nvidia<N> handed to this group's nodes, "
        "count per node, in node order. Default: the next unused indices from 0.")

    @property
    def is_simulated(self) -> bool:
        """``simulated`` as written, else whether the GRES type is ``sim``."""
        return self.simulated if self.simulated is not None else self.type == "sim"


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


class LoginNode(Strict):
    """A node users log in to and submit from: munge and the cluster's slurm.conf, no slurmd.
    Jobs started there with ``srun`` need every compute node to connect back to it."""

    name: NodeName
    address: IPv4Addr | None = Field(
        None, description="Default: the address after the compute nodes' (required with provider existing).")


class ComputeGroup(NodeResources):
    """A group of identical compute nodes: ``names`` (a hostlist) or ``count`` + ``prefix``."""

    names: str | None = Field(None, description="Hostlist of node names, e.g. c[01-04],gpu1.")
    count: int | None = Field(None, ge=1, le=100_000, description="Number of nodes named <prefix><i>.")
    prefix: NodeName = "c"
    first_address: IPv4Addr | None = Field(
        None, description="Address of the first node; the others follow. Default: after the previous group."
    )
    addresses: list[IPv4Addr] | None = Field(None, description="Explicit address per node, in name order.")
    features: list[SlurmFeature] | None = Field(
        None, description="Slurm node features (Features= in slurm.conf) these nodes must have, exactly: Slurm must "
        "list them for each node, and a job with --constraint=<feature> must run on them and no other. null (default): "
        "not checked.")
    kernel_modules: list[ModuleName] = Field(
        default_factory=list,
        description="Kernel modules these nodes must have loaded (or built in), beyond node_image.kernel_modules: "
                    "what this group's hardware needs, e.g. nvidia_peermem for GPUDirect RDMA, ib_umad, beegfs.")

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
    max_time: SlurmTime | None = Field(
        None, description="The partition's MaxTime, which Slurm's must equal (as a duration: 4:00:00 is 04:00:00). "
        "null (default): not checked; a cluster this tool provisions then gets UNLIMITED.")
    oversubscribe: bool = Field(
        False, description="Jobs in this partition share their CPUs on purpose (Slurm OverSubscribe=FORCE): the "
                           "check that jobs never share the CPUs they were granted does not apply to it, and Slurm "
                           "must say FORCE for it; false (default): Slurm must not force sharing.")


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
    job_memlock: Literal["unlimited"] | Annotated[int, Field(ge=1)] | None = Field(
        None, description="Locked-memory limit (ulimit -l) every job must get: 'unlimited' (what MPI over RDMA "
        "needs: slurmd with LimitMEMLOCK=infinity and PropagateResourceLimitsExcept=MEMLOCK), at least this "
        "many KiB, or null (default) to leave it unchecked.")
    job_shape_examples: int = Field(
        8, ge=0, le=1000, description="Random job shapes the property-based placement check submits (default 8; 0 = off)."
    )
    burst_jobs: int = Field(
        32, ge=0, le=1000, description="Short one-CPU jobs the burst check submits at once, as one job array "
        "(default 32; 0 = off): every task must complete, on whichever node it ran; a node that fails the tasks "
        "it is given while Slurm keeps it IDLE is named. More tasks reach more nodes of a large cluster.")
    users: list[UserName] = Field(
        default_factory=list, description="Users whose jobs must work (accounts from the site's directory, e.g. a "
        "test account): every node resolves each to the same uid, gid and home as the controller, and a job "
        "submitted as them runs as them on every compute node (run from the controller with runuser as root, "
        "else sudo -n -u). Local provider: made in the nodes' own passwd and group files, never the host's.")

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
    test_image: Literal["skeleton", "debootstrap"] = Field(
        "skeleton", description="What build_test_image builds: a skeleton rootfs on the host's /usr (read-only, "
        "fast) or a Debian minbase (debootstrap, ~25 s, ~200 MB). Torch is added when expect.torch is set.")
    binds: list[AbsPath] = Field(
        default_factory=list, description="Host paths bound into the container at the same path (the cluster's "
        "shared directory is always bound); they must exist as directories in the image.")
    oci_bundle: AbsPath | None = Field(
        None, description="An OCI bundle for Slurm's own 'srun --container' (oci.conf, runc); checked where set. "
        "With runtime slurm-oci, image is the bundle.")
    python_command: str = Field(
        "python3", description="How to start Python inside the image (Python/torch checks); the local test "
        "image with torch has it at /opt/venv/bin/python3.")
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
    test_size_mib: int = Field(64, ge=1, le=1024 * 1024, description="fio file per node for the throughput checks, MiB (default 64).")
    test_runtime_s: float = Field(1.0, gt=0, le=600, description="Length of the 4 KiB random-read fio run, s (default 1).")
    metadata_files: int = Field(200, ge=1, le=1_000_000, description="Files the metadata-rate check creates, stats and removes (default 200).")
    direct_io: bool = Field(True, description="fio with O_DIRECT (off for filesystems without it).")
    pairs_max: int = Field(16, ge=1, description="Node pairs the coherency check samples on large clusters (default 16).")
    brick_size_mib: int | None = Field(
        None, ge=64, description="Local provider: each brick is a filesystem of its own of this size (tmpfs), so a "
        "brick can fill up; default: a directory on the work directory's filesystem.")


# --------------------------------------------------------------------------- monitoring
#: what every node exporter must serve (the seed project's list: CPU, memory, filesystems, load,
#: network and disk counters)
NODE_EXPORTER_METRICS = [
    "node_cpu_seconds_total", "node_memory_MemTotal_bytes", "node_filesystem_size_bytes",
    "node_load1", "node_load5", "node_load15",
    "node_network_receive_bytes_total", "node_network_transmit_bytes_total",
    "node_disk_read_bytes_total", "node_disk_written_bytes_total",
]
#: the node exporter's collectors behind those metrics
NODE_EXPORTER_COLLECTORS = ["cpu", "meminfo", "filesystem", "loadavg", "netdev", "diskstats"]


class Alerting(Strict):
    """Prometheus's rules and its Alertmanager: rules evaluate without errors, Prometheus sends
    to the Alertmanager, and an always-firing alert (the dead man's switch) arrives there."""

    alertmanager_node: NodeName | None = Field(
        None, description="The node Alertmanager runs on (default: the Prometheus node).")
    alertmanager_port: int = Field(9093, ge=1, le=65535, description="Alertmanager's HTTP port (default 9093).")
    alertmanager_url: HttpUrl | None = Field(
        None, description="Alertmanager outside the cluster, e.g. http://mon01:9093 (instead of alertmanager_node "
                          "and alertmanager_port; not with the local provider).")
    watchdog_alert: MetricName | None = Field(
        "Watchdog", description="An alert that always fires (expr: vector(1)) and must be active in Alertmanager: "
                                "proof that rules are evaluated and alerts delivered (null: not checked).")
    node_down_alert: bool = Field(
        True, description="Some alerting rule watches the up series (of monitoring.job where set): a node whose "
                          "exporter cannot be scraped raises an alert (default true).")
    rule_groups: list[str] = Field(
        default_factory=list, description="Rule groups Prometheus must have loaded (default: none named; every "
                                          "loaded rule must evaluate without error either way).")


class Monitoring(Strict):
    """Prometheus and the node exporter: every node serves its metrics, Prometheus scrapes every
    node and answers queries about it. The local provider runs both; on other clusters the
    checks read what is there (HTTP GETs from the Prometheus node, nothing is changed)."""

    prometheus_node: NodeName | None = Field(
        None, description="The node Prometheus runs on (default: the controller); the checks' HTTP requests start there.")
    prometheus_port: int = Field(9090, ge=1, le=65535, description="Prometheus's HTTP port (default 9090).")
    prometheus_url: HttpUrl | None = Field(
        None, description="Prometheus outside the cluster, e.g. http://mon01:9090 (a monitoring host); the checks' "
                          "requests then start on prometheus_node, default the controller (not with the local provider).")
    node_exporter_port: int = Field(9100, ge=1, le=65535, description="The node exporter's port on every node (default 9100).")
    nodes: str = Field("ALL", description="Hostlist of the nodes that must be monitored, or ALL (every node, "
                                          "the controller included).")
    job: str | None = Field(None, description="The Prometheus scrape job the node exporters must be in (default: any).")
    required_metrics: list[MetricName] = Field(
        default_factory=lambda: list(NODE_EXPORTER_METRICS), min_length=1,
        description="Metrics every node exporter must serve, with at least one sample each (default: the seed's list).")
    required_collectors: list[str] = Field(
        default_factory=lambda: list(NODE_EXPORTER_COLLECTORS),
        description="Collectors every node exporter must run with success (node_scrape_collector_success 1; add "
                    "e.g. infiniband, nvme or textfile where the site relies on them). Collectors with nothing to "
                    "report also read 0, so the default is only those behind the required metrics.")
    scrape_age_s_max: float = Field(
        30.0, gt=0, description="A node's last scrape by Prometheus is at most this old, s (default 30).")
    scrape_interval_s: float = Field(
        1.0, gt=0, le=300, description="Local provider: Prometheus's scrape interval, s (default 1).")
    retention_days_min: float | None = Field(
        None, gt=0, description="Prometheus keeps its data at least this many days (storage.tsdb.retention.time; "
                                "default: not checked).")
    tsdb_free_gib_min: float = Field(
        1.0, ge=0, description="Free space where Prometheus keeps its data (storage.tsdb.path), GiB (default 1; "
                               "read on the Prometheus node, so not with prometheus_url).")
    alerting: Alerting | None = Field(None, description="Check rules and Alertmanager too (default: not checked).")


# --------------------------------------------------------------------------- thresholds
class Thresholds(Strict):
    """Every number a suite asserts. Defaults suit the local provider; tighten for real fabrics."""

    ping_loss_max_pct: float = Field(0.0, ge=0, le=100, description="Packet loss between any two nodes, % (default 0).")
    latency_p50_ms_max: float = Field(1.0, gt=0, description="Node-to-node ping round trip, median, ms (default 1).")
    latency_p99_ms_max: float = Field(5.0, gt=0, description="Node-to-node ping round trip, p99, ms (default 5).")
    bandwidth_gbps_min: float = Field(1.0, ge=0, description="iperf3 TCP between a node pair, Gbit/s (default 1).")
    bandwidth_seconds: int = Field(1, ge=1, le=60, description="How long each iperf3 measurement runs, whole s (default 1).")
    bandwidth_pairs_max: int = Field(16, ge=1, description="Node pairs sampled for bandwidth on large clusters (default 16).")
    ssh_connect_s_max: float = Field(5.0, gt=0, description="Opening an SSH session to a node, s (default 5).")
    node_register_s_max: float = Field(60.0, gt=0, description="Waiting for every node to register in Slurm, s (default 60). "
                                       "Provisioned clusters wait at least this long before provisioning fails.")
    clock_skew_s_max: float = Field(1.0, gt=0, description="A compute node's wall clock differs from the controller's "
                                    "by at most, s, beyond the measurement's own error (default 1; munge refuses "
                                    "credentials from clocks minutes apart, and skew muddles logs and file times).")
    slurm_dir_free_gib_min: float = Field(1.0, ge=0, description="Free space where Slurm keeps its state, GiB: "
                                          "StateSaveLocation on the controller, SlurmdSpoolDir on every compute node "
                                          "(default 1; a full one stops slurmctld saving jobs, or slurmd starting them).")
    job_start_s_max: float = Field(30.0, gt=0, description="A one-step job on every node completes within, s (default 30).")
    job_cleanup_s_max: float = Field(10.0, gt=0, description="A process a job left behind is gone within, s after the "
                                     "job ended (default 10: Slurm's KillWait and slurmstepd's sweep, with room).")
    burst_s_max: float = Field(120.0, gt=0, description="A burst of slurm.burst_jobs short jobs has ended within, s "
                               "(default 120).")
    burst_jobs_per_min_min: float | None = Field(
        None, gt=0, description="Short jobs a burst completes per minute, submission to last end (default: not "
        "asserted; measured). Slow prologs, epilogs or scheduling show here.")
    mpi_latency_us_max: float = Field(100.0, gt=0, description="MPI ping-pong half round trip, 8 B, µs (default 100).")
    mpi_bandwidth_mibps_min: float = Field(100.0, ge=0, description="MPI ping-pong bandwidth, 1 MiB messages, MiB/s (default 100).")
    provision_s_max: float | None = Field(None, gt=0, description="Provisioning the cluster, s (default: not asserted).")
    gpu_matmul_peak_fraction_min: float = Field(
        0.5, ge=0, le=1, description="bf16/fp16/fp32 matmul TFLOP/s as a fraction of the model's dense peak (default 0.5).")
    gpu_memory_bw_peak_fraction_min: float = Field(
        0.5, ge=0, le=1, description="Device memory copy bandwidth as a fraction of the model's peak (default 0.5).")
    gpu_host_copy_link_fraction_min: float = Field(
        0.5, ge=0, le=1, description="Pinned host<->device copy GB/s as a fraction of the PCIe link's rate (default 0.5).")
    gpu_allreduce_busbw_gbps_min: float | None = Field(
        None, ge=0, description="NCCL all-reduce bus bandwidth over several GPUs, GB/s (default: not asserted).")
    gpu_train_loss_ratio_max: float = Field(
        0.5, gt=0, le=1, description="A short training loop's last loss over its first must be at most (default 0.5).")
    regression_tolerance_pct: float = Field(
        10.0, ge=0, description="With --hpc-baseline: a metric worse than the baseline by more than this fails, % (default 10)."
    )


class NodeImage(Strict):
    """How alike the compute nodes' software must be (kernel, OS release, installed packages, kernel parameters,
    kernel tunables)."""

    ignore_packages: list[str] = Field(
        default_factory=list,
        description="Packages allowed to differ between compute nodes: fnmatch patterns, e.g. site-node-id*.")
    ignore_kernel_parameters: list[str] = Field(
        default_factory=list,
        description="Kernel parameters (names, fnmatch patterns, e.g. console) allowed to differ between the "
                    "compute nodes of a group; root, ip, hostname, BOOT_IMAGE, initrd and nfsroot never count.")
    memory_tolerance_pct: float = Field(
        2.0, ge=0, le=50,
        description="How far (%) a compute node's MemTotal may be from its group's median (identical nodes differ "
                    "by what their firmware reserves; a missing DIMM of 16 is 6.25 %).")
    forbidden_taints: TaintLetters = Field(
        "BDLM",
        description="Kernel taint flags (letters of /proc/sys/kernel/tainted, as in the kernel's tainted-kernels "
                    "document) no compute node may carry: B bad page, D oops, L soft lockup, M machine check; add W "
                    "(a kernel warning) to be stricter. P, O, E (proprietary, out-of-tree, unsigned modules: NVIDIA, "
                    "Lustre) are normal.")
    kernel_modules: list[ModuleName] = Field(
        default_factory=list,
        description="Kernel modules every compute node must have loaded (or built in), e.g. ib_ipoib, lustre; a "
                    "group's own go in compute[i].kernel_modules. A missing one fails on its node (NCCL without "
                    "nvidia_peermem, MPI without ib_umad, fall back to slower paths without an error).")
    login_packages: list[str] = Field(
        default_factory=lambda: list(LOGIN_PACKAGES),
        description="Packages (fnmatch patterns) a login node must have at the compute nodes' version where both "
                    "have them: what users build against there runs on the compute nodes, what they submit with "
                    "speaks to slurmctld. Default: " + ", ".join(LOGIN_PACKAGES) + ".")
    sysctls: list[SysctlName] = Field(
        default_factory=lambda: list(DEFAULT_SYSCTLS),
        description="Kernel tunables (sysctl names, e.g. vm.zone_reclaim_mode) that must be alike on the compute "
                    "nodes of a group; transparent hugepages are compared always. Default: "
                    + ", ".join(DEFAULT_SYSCTLS) + ".")


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
    command_timeout_s: float = Field(300.0, gt=0, description="Bound for a command a check runs without a timeout of its own, s.")
    agent: bool = Field(True, description="Offer the keys of a running ssh-agent (SSH_AUTH_SOCK) too.")
    connect_parallel: int = Field(32, ge=1, le=1024, description="SSH connections opened at once (default 32).")


class ExistingNode(Strict):
    """How to reach one node of an existing cluster, where it differs from the global ``ssh``."""

    host: str | None = Field(None, description="Name or address to SSH to. Default: the node's address.")
    transport: Literal["ssh", "local"] | None = Field(None, description="Default: existing.transport.")
    user: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    key_file: str | None = None
    jump: str | None = Field(None, description="ProxyJump host, user@host[:port]; 'none' for a direct connection.")
    agent: bool | None = None


class Existing(Strict):
    """Attaching to a cluster the run did not create (provider: existing)."""

    discover: Literal["none", "slurm"] = Field(
        "none", description="slurm: compute nodes, their addresses, CPUs, memory and GRES (and the partitions, "
        "unless slurm.partitions is given) are read from `scontrol show` on the controller; the compute section "
        "then only states what to assert.")
    transport: Literal["ssh", "local"] = Field(
        "ssh", description="local: commands run on the machine pytest runs on (on-node mode, no SSH).")
    scratch_dir: AbsPath = Field(
        "/tmp", description="The run writes only under <scratch_dir>/hpcv-<run id>, removed at the end.")
    scratch_shared: bool = Field(
        False, description="scratch_dir is one filesystem every node sees at the same path (MPI programs are built there).")
    nodes: dict[NodeName, ExistingNode] = Field(default_factory=dict, description="Per-node access overrides.")
    sudo: bool = Field(
        False, description="Checks that need root (munge key owner and mode, GlusterFS/BeeGFS health) may use "
        "`sudo -n` where the login user is not root. Off: those checks are skipped naming the missing privilege "
        "(failed under --hpc-strict).")


class Libvirt(Strict):
    uri: str = "qemu:///system"
    domain_type: Literal["auto", "kvm", "qemu"] = "auto"
    base_image: str | None = None
    hardware: dict = Field(default_factory=dict, description="The seed's hardware.acceleration block, kept as is.")
    guest_packages: list[str] = Field(
        default_factory=list, description="Debian packages added to the guest image (e.g. libopenmpi-dev gcc for MPI builds).")
    guest_cpus: int | None = Field(
        None, ge=1, description="vCPUs each VM really gets (Slurm still declares the node's cpus). Default: the "
        "node's cpus, at most this host's cores.")
    guest_memory_mb: int | None = Field(
        None, ge=128, description="RAM each VM really gets, MiB (Slurm still declares memory_mb). Default: memory_mb and an eighth "
        "more (at least 64 MiB) for the guest's kernel, so that MemTotal holds Slurm's RealMemory, within a fair share "
        "of this host's available memory.")
    boot_timeout_s: float = Field(
        240.0, gt=0, description="From starting the VMs to sshd answering on every one, s (TCG guests on a busy "
        "2-core host took 10 to 120 s).")
    image_cache: AbsPath = Field("/var/cache/hpcvalidate/libvirt", description="Where guest images are cached by content.")


# --------------------------------------------------------------------------- root
@dataclass(frozen=True)
class ResolvedNode:
    """A node with every default applied: what providers build and suites assert."""

    name: str
    role: Literal["controller", "compute", "login"]
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
    #: the node's ``gpus`` section as written (health expectations of real GPUs), or None
    gpu_config: Gpus | None = None
    #: kernel modules its group requires (``compute[i].kernel_modules``)
    kernel_modules: tuple[str, ...] = ()
    #: the Slurm features it must have (``compute[i].features``), or None: not checked
    features: tuple[str, ...] | None = None

    @property
    def gpu_python(self) -> str:
        """The Python the GPU checks start on this node (``gpus.python``)."""
        return self.gpu_config.python if self.gpu_config is not None else "python3"


class ClusterConfig(Strict):
    name: ClusterName
    provider: Literal["local", "libvirt", "existing"] = "local"
    description: str = ""
    network: Network
    controller: Controller = Field(default_factory=Controller)
    compute: list[ComputeGroup] = Field(min_length=1)
    login: list[LoginNode] = Field(
        default_factory=list, description="Login (submit) nodes: the checks submit jobs from each as users do.")
    slurm: Slurm = Field(default_factory=Slurm)
    containers: Containers | None = None
    storage: list[Storage] = Field(default_factory=list)
    monitoring: Monitoring | None = None
    thresholds: Thresholds = Field(default_factory=Thresholds)
    node_image: NodeImage = Field(default_factory=NodeImage)
    signoff: Signoff = Field(default_factory=Signoff)
    ssh: SSHAccess = Field(default_factory=SSHAccess)
    existing: Existing | None = Field(None, description="provider existing: discovery, on-node mode, scratch dir.")
    libvirt: Libvirt | None = None

    @model_validator(mode="before")
    @classmethod
    def _existing_has_no_bridge(cls, data):
        """An existing cluster's network is not ours to build: ``network.bridge`` may be left out."""
        if isinstance(data, dict) and data.get("provider") == "existing" and isinstance(data.get("network"), dict):
            data = {**data, "network": {"bridge": "none", **data["network"]}}
        return data

    @model_validator(mode="after")
    def _monitoring_names_known_nodes(self) -> "ClusterConfig":
        m = self.monitoring
        if m is not None:
            outside = [f for f, v in (("monitoring.prometheus_url", m.prometheus_url),
                                      ("monitoring.alerting.alertmanager_url",
                                       m.alerting.alertmanager_url if m.alerting else None)) if v]
            if outside and self.provider == "local":
                raise ValueError(f"{outside[0]}: the local provider runs Prometheus and Alertmanager on a node of the "
                                 f"cluster; leave it out (or use provider existing)")
        if not self.discovers_nodes():
            problems = self.unknown_node_names()
            if problems:
                raise ValueError(problems[0])
        return self

    def discovers_nodes(self) -> bool:
        """The compute nodes come from Slurm (``existing.discover: slurm``): names are checked
        against them after discovery, not against the config's own list."""
        return self.existing is not None and self.existing.discover == "slurm"

    def unknown_node_names(self) -> list[str]:
        """Every setting that names a node this config does not have, one line each."""
        known = {self.controller.name, *(n for g in self.compute for n in g.node_names()), *(n.name for n in self.login)}
        known_text = ", ".join(sorted(known))
        out = []
        m = self.monitoring
        if m is not None:
            am = m.alerting.alertmanager_node if m.alerting else None
            if am is not None and am not in known:
                out.append(f"monitoring.alerting.alertmanager_node: {am} is not a node of this cluster; known: {known_text}")
            if m.prometheus_node is not None and m.prometheus_node not in known:
                out.append(f"monitoring.prometheus_node: {m.prometheus_node} is not a node of this cluster; "
                           f"known: {known_text}")
            if m.nodes != "ALL":
                try:
                    unknown = sorted(set(expand_hostlist(m.nodes)) - known)
                except ValueError as exc:
                    out.append(f"monitoring.nodes: {exc}")
                    unknown = []
                if unknown:
                    out.append(f"monitoring.nodes: unknown node(s) {', '.join(unknown)}; use ALL or nodes of this cluster")
        if self.existing is not None:
            unknown = sorted(set(self.existing.nodes) - known)
            if unknown:
                out.append(f"existing.nodes: unknown node(s) {', '.join(unknown)}; known: {known_text}")
        return out

    @model_validator(mode="after")
    def _existing_nodes_are_addressed(self) -> "ClusterConfig":
        """On an existing cluster addresses are facts to assert, never assigned by us."""
        if self.provider != "existing":
            return self
        discover = self.discovers_nodes()
        if self.controller.address is None:
            raise ValueError("controller.address: required with provider existing (the controller's cluster-network address)")
        for gi, group in enumerate(self.compute):
            if not discover and group.addresses is None and group.first_address is None:
                raise ValueError(f"compute[{gi}]: give 'addresses' (or 'first_address') with provider existing, "
                                 "or set existing.discover: slurm to read them from Slurm")
        for li, login in enumerate(self.login):
            if login.address is None:
                raise ValueError(f"login[{li}].address: required with provider existing (the login node's "
                                 "cluster-network address)")
        return self

    # ----------------------------------------------------------------- derived facts
    def resolved_nodes(self) -> list[ResolvedNode]:
        """Controller first, then compute nodes in config order, then login nodes, with
        addresses assigned."""
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
        for li, login in enumerate(self.login):
            addr = str(login.address) if login.address is not None else str(ipaddress.IPv4Address(next_addr))
            next_addr = max(next_addr, int(ipaddress.IPv4Address(addr)) + 1)
            out.append(ResolvedNode(name=login.name, role="login", address=addr, cpus=0, memory_mb=0, gpus=0,
                                    gpu_type="", gpu_model=None, gpu_simulated=False, pcie=(), virtio_fs=(),
                                    origin=f"login[{li}]"))
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
            gpu_simulated=bool(g and g.is_simulated),
            pcie=tuple(res.pcie_passthrough),
            virtio_fs=tuple(res.virtio_fs_mounts),
            origin=origin,
            gpu_config=g,
            kernel_modules=tuple(getattr(res, "kernel_modules", ())),
            features=None if getattr(res, "features", None) is None else tuple(res.features),
        )

    def gpu_host_devices(self) -> dict[str, tuple[int, ...]]:
        """Local provider, real GPUs: {node: host /dev/nvidia<N> indices it gets}. Each compute
        group's ``gpus.host_devices`` is dealt out ``count`` per node in node order; groups
        without it take the next indices no earlier node took."""
        out: dict[str, tuple[int, ...]] = {}
        taken: set[int] = set()
        for group in self.compute:
            g = group.gpus
            if not g or not g.count or g.is_simulated:
                continue
            explicit = list(g.host_devices or [])
            for name in group.node_names():
                if explicit:
                    mine, explicit = explicit[:g.count], explicit[g.count:]
                else:
                    mine = []
                    i = 0
                    while len(mine) < g.count:
                        if i not in taken:
                            mine.append(i)
                        i += 1
                taken.update(mine)
                out[name] = tuple(mine)
        return out

    def monitored_nodes(self) -> list[str]:
        """The nodes ``monitoring.nodes`` names, in config order (none without a monitoring section)."""
        if self.monitoring is None:
            return []
        names = [n.name for n in self.resolved_nodes()]
        if self.monitoring.nodes == "ALL":
            return names
        wanted = set(expand_hostlist(self.monitoring.nodes))
        return [n for n in names if n in wanted]

    def prometheus_node(self) -> str:
        """Where Prometheus runs (``monitoring.prometheus_node``, default the controller); with a
        ``prometheus_url``, the node the checks' requests start on."""
        m = self.monitoring
        return m.prometheus_node if m is not None and m.prometheus_node else self.controller.name

    def alertmanager_node(self) -> str | None:
        """Where Alertmanager runs (``monitoring.alerting.alertmanager_node``, default the
        Prometheus node); None without alerting."""
        m = self.monitoring
        if m is None or m.alerting is None:
            return None
        return m.alerting.alertmanager_node or self.prometheus_node()

    def declared_areas(self) -> list[str]:
        """The areas this config gives something to check in, in layer order."""
        nodes = self.resolved_nodes()
        areas = ["nodes", "network", "slurm", "cgroup", "mpi"]
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
        if self.monitoring is not None:
            areas.append("monitoring")
        return [a for a in AREAS if a in areas]

    def required_areas(self) -> list[str]:
        if self.signoff.required is None:
            return self.declared_areas()
        return [a for a in AREAS if a in self.signoff.required]
