"""The host side: libvirtd up and reachable, and which acceleration can be trusted.

No systemd here: when nothing listens on libvirtd's socket (missing, or left by a dead daemon), ``virtlogd -d`` then ``libvirtd -d`` are
started (no ``--listen``; the first connection takes seconds while QEMU's capabilities are
probed). They are host services, like sshd: they stay after a run, as ``setup.sh`` leaves them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from ..base import ProvisioningError

LIBVIRT_SOCKET = Path("/run/libvirt/libvirt-sock")
VIRTLOGD_SOCKET = Path("/run/libvirt/virtlogd-sock")
START_TIMEOUT_S = 20.0


def _listening(socket: Path) -> bool:
    """Whether a daemon accepts connections on ``socket``. A socket file alone is not enough: a
    daemon that died (or a machine image taken while it ran) leaves it behind, and clients then
    get "Connection refused" (seen in CI)."""
    import socket as sockmod

    if not socket.exists():
        return False
    with sockmod.socket(sockmod.AF_UNIX, sockmod.SOCK_STREAM) as s:
        s.settimeout(2.0)
        try:
            s.connect(str(socket))
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError:
            return True  # e.g. a timeout: something holds it; let the client report what
    return True


def _start(binary: str, socket: Path) -> None:
    if _listening(socket):
        return
    if socket.exists():
        socket.unlink()  # stale: nobody listens
    path = shutil.which(binary) or f"/usr/sbin/{binary}"
    if not os.access(path, os.X_OK):
        raise ProvisioningError(
            f"{binary} is not installed; install it: apt-get install -y libvirt-daemon-system qemu-system-x86 "
            "qemu-utils dnsmasq-base (or run setup.sh)"
        )
    proc = subprocess.run([path, "-d"], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise ProvisioningError(f"starting {binary} failed: {proc.stderr.strip()[-300:]}")
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _listening(socket):
        if time.monotonic() > deadline:
            raise ProvisioningError(f"{binary} started but nothing listens on {socket} after {START_TIMEOUT_S:.0f}s")
        time.sleep(0.05)


def fix_kvm_node(dev: Path = Path("/dev/kvm")) -> bool:
    """Give /dev/kvm the owner and mode Debian's udev rules give it (root:kvm 0660).

    Without udev (containers, minimal VMs) it is root:root 0600. libvirt then probes QEMU's
    capabilities with KVM (the probe starts as root) but judges its cache stale on every
    lookup because its QEMU user cannot open /dev/kvm ("KVM was enabled when probing ... but
    it is not available now"): each domain start re-probed QEMU ~40 times, ~75 s per domain
    here, instead of 0.5 s. Returns True when it changed something."""
    import grp

    try:
        st = dev.stat()
        kvm_gid = grp.getgrnam("kvm").gr_gid
    except (OSError, KeyError):
        return False
    if st.st_gid == kvm_gid and st.st_mode & 0o060 == 0o060:
        return False
    os.chown(dev, 0, kvm_gid)
    os.chmod(dev, 0o660)
    return True


def ensure_libvirtd(uri: str) -> None:
    """Start virtlogd and libvirtd when ``uri`` is the local system daemon and it is not running."""
    if not uri.startswith("qemu:///system"):
        return
    fix_kvm_node()
    _start("virtlogd", VIRTLOGD_SOCKET)
    # libvirtd 9.0 writes per-network files here and does not create the directory itself
    Path("/var/lib/libvirt/dnsmasq").mkdir(parents=True, exist_ok=True)
    _start("libvirtd", LIBVIRT_SOCKET)


def kvm_verdict(cpuinfo: str | None = None, dev: Path = Path("/dev/kvm")) -> tuple[bool, str]:
    """Whether to try KVM, and why (or why not).

    /dev/kvm existing is not enough: inside a VM (the CPU flags carry ``hypervisor``) nested
    KVM was seen to hang guests for good right after "Probing EDD". KVM is tried only on
    bare metal with VT-x/AMD-V; even then the first boot is time-boxed (see the provider).
    """
    if not os.access(dev, os.R_OK | os.W_OK):
        return False, f"{dev} is missing or not accessible"
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    if not flags & {"vmx", "svm"}:
        return False, "the CPU shows no VT-x/AMD-V flags"
    if "hypervisor" in flags:
        return False, "this host is itself a VM (nested KVM hangs guests here); using TCG"
    return True, "bare metal with VT-x/AMD-V and /dev/kvm"


def libvirt_module():
    """libvirt-python, imported here so the rest of the package does not need it, with
    libvirt's default error printing to stderr silenced; a clear error where it is missing
    (a folder named ``libvirt`` on sys.path, such as this project's tests/libvirt, is not it)."""
    try:
        import libvirt
    except ImportError:
        libvirt = None
    if libvirt is None or not hasattr(libvirt, "open"):
        raise ProvisioningError(
            "libvirt-python is missing; install it: apt-get install -y libvirt-dev pkg-config && "
            ".venv/bin/pip install -e '.[libvirt]' (setup.sh does both)"
        )
    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    return libvirt


def open_connection(uri: str):
    """A libvirt connection (libvirtd started first where it is not running)."""
    libvirt = libvirt_module()
    ensure_libvirtd(uri)
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise ProvisioningError(f"cannot connect to libvirt at {uri}: {exc}") from None
