"""Checks before anything is created: each failure is one line naming the fix."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

from ..base import ProvisioningError
from . import netns
from .naming import link_alias, netns_name
from .spec import LocalSpec

#: binary → the Debian package that provides it
REQUIRED_BINARIES = {
    "slurmctld": "slurmctld",
    "slurmd": "slurmd",
    "sinfo": "slurm-client",
    "scontrol": "slurm-client",
    "srun": "slurm-client",
    "munged": "munge",
    "munge": "munge",
    "ip": "iproute2",
    "nsenter": "util-linux",
    "unshare": "util-linux",
    "prlimit": "util-linux",
    "mount": "mount",
    "ssh-keygen": "openssh-client",
    "/usr/sbin/sshd": "openssh-server",
}

#: needed only when the config asks for job accounting (slurm.accounting)
ACCOUNTING_BINARIES = {
    "slurmdbd": "slurmdbd",
    "mariadbd": "mariadb-server",
    "mariadb-install-db": "mariadb-server",
    "sacct": "slurm-client",
}


def _found(binary: str) -> bool:
    if binary.startswith("/"):
        return os.access(binary, os.X_OK)
    return shutil.which(binary) is not None


def check_root() -> None:
    if os.geteuid() != 0:
        raise ProvisioningError(
            "the local provider needs root (network namespaces, bridges, cgroups, mounts); "
            "run pytest as root, or pick another provider (--hpc-provider existing)"
        )


def check_binaries(accounting: bool = False) -> None:
    wanted = {**REQUIRED_BINARIES, **(ACCOUNTING_BINARIES if accounting else {})}
    missing = {pkg for binary, pkg in wanted.items() if not _found(binary)}
    if missing:
        raise ProvisioningError(
            "missing programs for the local provider; install them: apt-get install -y " + " ".join(sorted(missing))
        )
    if not Path("/etc/slurm").is_dir():
        raise ProvisioningError(
            "/etc/slurm does not exist (each node binds the cluster's configs there); "
            "install it: apt-get install -y slurm-client"
        )
    if not Path("/etc/hosts").is_file():
        raise ProvisioningError(
            "/etc/hosts does not exist (each node binds its own hosts file there); "
            "create it: echo '127.0.0.1 localhost' > /etc/hosts"
        )


def check_network(spec: LocalSpec, recorded_bridge: bool) -> None:
    """The bridge name is free (or ours), and no foreign route or address overlaps the subnet."""
    existing = netns.link(spec.bridge)
    if existing is not None and existing.get("ifalias") != link_alias(spec.cluster) and not recorded_bridge:
        raise ProvisioningError(
            f"a network device named {spec.bridge!r} already exists and is not this cluster's; "
            f"choose another network.bridge in the config, or remove it (ip link del {spec.bridge})"
        )
    conflicts = netns.subnet_conflicts(spec)
    if conflicts:
        raise ProvisioningError(
            f"subnet {spec.subnet} of cluster {spec.cluster!r} collides with {', '.join(conflicts)} on this host; "
            "choose another network.subnet in the config"
        )
    present = netns.list_netns()
    taken = [netns_name(spec.cluster, n.name) for n in spec.nodes if netns_name(spec.cluster, n.name) in present]
    if taken:
        raise ProvisioningError(
            f"network namespace(s) {', '.join(taken)} already exist; remove them with "
            f"`python -m pytest_hpcvalidate cleanup --cluster {spec.cluster}` (or ip netns del NAME)"
        )


def check_paths(spec: LocalSpec) -> None:
    wd = Path(spec.work_dir).resolve()
    if wd == Path("/") or len(wd.parts) < 3:
        raise ProvisioningError(f"work_dir {wd} is too close to / to be removed safely; use a dedicated directory")
    if wd == Path("/tmp") or Path("/tmp") in wd.parents:
        raise ProvisioningError(
            f"work_dir {wd} is under /tmp, which every node replaces by a private /tmp; "
            "use a directory elsewhere (default /var/lib/hpcvalidate/clusters)"
        )
    shared = Path(spec.shared_dir).resolve()
    if Path("/tmp") in shared.parents or shared == Path("/tmp"):
        raise ProvisioningError(f"shared_dir {shared} is under /tmp, which each node makes private; move it")


def host_dev() -> Path:
    """Where the host's NVIDIA device nodes are: /dev (``HPCV_HOST_DEV`` for the tests, which
    stand up fake ones on machines without a GPU)."""
    return Path(os.environ.get("HPCV_HOST_DEV", "/dev"))


def host_gpu_name(index: int = 0) -> tuple[str | None, str]:
    """(the product name nvidia-smi gives this machine's GPU ``index``, "") — or (None, why not)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "-i", str(index)],
                             capture_output=True, text=True)
    except FileNotFoundError:
        return None, "nvidia-smi is not installed"
    name = out.stdout.strip()
    if out.returncode != 0 or not name:
        return None, (out.stderr or out.stdout).strip()[-200:] or f"exit {out.returncode}"
    return name, ""


def check_real_gpus(spec: LocalSpec) -> None:
    """Every real GPU a node is given exists here as a character device, with nvidiactl."""
    dev = host_dev()
    for n in spec.compute:
        if not n.gpu_host_devices:
            continue
        for name in [*(f"nvidia{i}" for i in n.gpu_host_devices), "nvidiactl"]:
            path = dev / name
            if not (path.exists() and stat.S_ISCHR(path.stat().st_mode)):
                raise ProvisioningError(
                    f"{n.name}: its real GPUs (gpus.type {n.gpu_type}) need {path}, and this machine has no such "
                    "device; use gpus.type: sim (or simulated: true) for simulated GPUs"
                )


def warnings(spec: LocalSpec) -> list[str]:
    """What will not behave like a real cluster of this spec on this machine (not fatal)."""
    out = []
    host_cpus = os.cpu_count() or 1
    over = [n.name for n in spec.compute if n.cpus > host_cpus]
    if over:
        out.append(
            f"{', '.join(over)} declare more CPUs than this machine has ({host_cpus}): Slurm reports the "
            f"declared count, but a job step using more than {host_cpus} CPUs on one node fails with "
            "'Unable to layout tasks on given cpus'"
        )
    return out
