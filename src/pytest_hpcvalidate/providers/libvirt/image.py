"""The guest image: built offline once, cached by content, shared read-only by every guest.

One image is a directory ``<cache>/<key>/`` holding

- ``vmlinuz``      Debian's cloud kernel (``linux-image-cloud-amd64`` resolved to its exact package)
- ``initrd.img``   busybox + the virtio modules + ``/init`` (:mod:`.initramfs`)
- ``rootfs.raw``   an ext4 image of a ``debootstrap --variant=minbase`` Debian 12 with the
                   guest packages and the guest init (:mod:`.guest`); guests boot from a qcow2
                   overlay on it, so it is never written
- ``manifest.json`` what went in, how long it took, how big it is

``key`` is a hash of what decides the content: the package list, the kernel package and
version, the suite and the guest init. The same inputs find the same directory, so a second
run reuses it; changing any of them builds a new one. A build goes to a temporary directory
renamed into place at the end (a crashed build leaves no half image behind) under a lock
(two runs wanting the same image build it once).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..base import ProgressFn, ProvisioningError, no_progress
from . import guest, initramfs

DEFAULT_CACHE = Path(os.environ.get("HPCV_IMAGE_CACHE", "/var/cache/hpcvalidate/libvirt"))
SUITE = "bookworm"
KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
BUSYBOX = Path("/bin/busybox")
#: what every guest needs for the L1/L2 suites: sshd, iproute2, ping, iperf3, munge, Slurm,
#: Open MPI + PMIx, fio; tini is PID 1
BASE_PACKAGES = (
    "openssh-server", "iproute2", "iputils-ping", "iperf3", "procps", "tini",
    "munge", "slurmd", "slurmctld", "slurm-client",
    # libpmix-dev: Slurm's mpi/pmix plugin dlopens the unversioned libpmix.so it ships
    "openmpi-bin", "libpmix2", "libpmix-dev", "fio",
)
#: bumped when the build recipe changes in a way the key does not see (2: the initramfs loads
#: bridge, veth and overlay too; the key hashes /init without its module list)
RECIPE_VERSION = 2
ROOTFS_HEADROOM_MIB = 2048
#: what the image does not need (docs, man pages, locales, apt's package lists)
TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/lib/apt/lists",
        "var/cache/apt", "var/cache/debconf/templates.dat-old")
SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
FALLBACK_MIRROR = "http://deb.debian.org/debian"


@dataclass(frozen=True)
class ImageSpec:
    """What goes into an image (and so into its key)."""

    packages: tuple[str, ...] = BASE_PACKAGES
    kernel_package: str = KERNEL_META_PACKAGE
    suite: str = SUITE
    mirror: str | None = None  # where debootstrap fetches from; default: this machine's apt mirror

    def with_extra(self, extra: list[str] | tuple[str, ...]) -> "ImageSpec":
        return ImageSpec(tuple(dict.fromkeys([*self.packages, *extra])), self.kernel_package, self.suite, self.mirror)


@dataclass(frozen=True)
class GuestImage:
    """A built image on disk."""

    root: Path
    key: str
    manifest: dict = field(default_factory=dict)

    @property
    def kernel(self) -> Path:
        return self.root / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.root / "initrd.img"

    @property
    def rootfs(self) -> Path:
        return self.root / "rootfs.raw"

    @property
    def reused(self) -> bool:
        return bool(self.manifest.get("reused"))


# -- inputs -------------------------------------------------------------------------------------

def _run(argv: list[str], what: str, timeout: float = 900, **kw) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    except FileNotFoundError:
        raise ProvisioningError(f"{what}: {argv[0]} is not installed; run setup.sh (apt-get install -y "
                                "debootstrap busybox-static kmod e2fsprogs qemu-utils)") from None
    except subprocess.TimeoutExpired:
        raise ProvisioningError(f"{what} took longer than {timeout:.0f}s") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
        raise ProvisioningError(f"{what} failed (exit {proc.returncode}): {' | '.join(tail)}")
    return proc


def host_mirror(sources: tuple[Path, ...] = SOURCES) -> str:
    """The Debian mirror this machine's apt uses (deb822 ``URIs:`` or a one-line ``deb``)."""
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        m = (re.search(r"^URIs:\s*(\S+/debian)/?\s*$", text, re.M)
             or re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)/?\s", text, re.M))
        if m:
            return m.group(1)
    return FALLBACK_MIRROR


def resolve_kernel(package: str) -> tuple[str, str]:
    """(exact package, version) for a kernel package or its meta-package, from apt's cache."""
    name = package
    deps = _run(["apt-cache", "depends", package], f"looking up {package} (apt-get update first?)").stdout
    m = re.search(r"Depends:\s+(linux-image-\S+)", deps)
    if m and not re.search(r"\d+\.\d+", package):
        name = m.group(1)
    policy = _run(["apt-cache", "policy", name], f"looking up {name}").stdout
    v = re.search(r"Candidate:\s+(\S+)", policy)
    if not v or v.group(1) == "(none)":
        raise ProvisioningError(f"kernel package {name} has no installable version; run apt-get update")
    return name, v.group(1)


def image_key(spec: ImageSpec, kernel: str, kernel_version: str) -> str:
    """Content address of an image: package list, kernel and version, suite, guest init, recipe."""
    doc = {
        "packages": sorted(spec.packages),
        "kernel": [kernel, kernel_version],
        "suite": spec.suite,
        "init": hashlib.sha256((guest.GUEST_INIT_SCRIPT + initramfs.render_init([])).encode()).hexdigest(),
        "recipe": RECIPE_VERSION,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


# -- cache ----------------------------------------------------------------------------------------

@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def cached(cache: Path, key: str) -> GuestImage | None:
    root = cache / key
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    img = GuestImage(root, key, manifest)
    return img if all(p.is_file() for p in (img.kernel, img.initrd, img.rootfs)) else None


def ensure_image(spec: ImageSpec = ImageSpec(), cache: Path = DEFAULT_CACHE,
                 progress: ProgressFn = no_progress) -> GuestImage:
    """The image for ``spec``: from the cache when it is there, else built (and cached)."""
    progress("image", "", "resolving the kernel package")
    kernel, version = resolve_kernel(spec.kernel_package)
    key = image_key(spec, kernel, version)
    found = cached(cache, key)
    if found is not None:
        progress("image", "", f"cached {key}")
        return GuestImage(found.root, key, {**found.manifest, "reused": True})
    with _locked(cache / f".{key}.lock"):
        found = cached(cache, key)  # built by another run while we waited
        if found is not None:
            return GuestImage(found.root, key, {**found.manifest, "reused": True})
        return _build(spec, kernel, version, key, cache, progress)


def _build(spec: ImageSpec, kernel: str, version: str, key: str, cache: Path, progress: ProgressFn) -> GuestImage:
    start = time.monotonic()
    timings: dict[str, float] = {}
    cache.mkdir(parents=True, exist_ok=True)
    os.chmod(cache, 0o755)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.build-", dir=cache))
    try:
        out = tmp / "image"
        out.mkdir()
        rootfs = tmp / "rootfs"
        mirror = spec.mirror or host_mirror()

        progress("image", "", f"fetching {kernel} {version}")
        kver = _fetch_kernel(kernel, tmp / "kernel", out / "vmlinuz")
        timings["kernel"] = round(time.monotonic() - start, 1)

        progress("image", "", f"debootstrap {spec.suite} minbase from {mirror}")
        _run(["debootstrap", "--variant=minbase", spec.suite, str(rootfs), mirror], "debootstrap")
        timings["debootstrap"] = round(time.monotonic() - start, 1)

        progress("image", "", f"installing {len(spec.packages)} packages in the guest root")
        _install_packages(rootfs, spec.packages)
        timings["packages"] = round(time.monotonic() - start, 1)

        _finish_rootfs(rootfs)
        progress("image", "", "writing the ext4 root image")
        used_mib = _du_mib(rootfs)
        size_mib = used_mib + ROOTFS_HEADROOM_MIB
        _run(["mkfs.ext4", "-q", "-F", "-L", "hpcv-root", "-d", str(rootfs), str(out / "rootfs.raw"), f"{size_mib}M"],
             "mkfs.ext4 -d (the root image)")
        timings["rootfs"] = round(time.monotonic() - start, 1)

        progress("image", "", "building the initramfs")
        initrd, modules = initramfs.build_base_initramfs(BUSYBOX, tmp / "kernel", kver)
        (out / "initrd.img").write_bytes(initrd)
        timings["initramfs"] = round(time.monotonic() - start, 1)

        manifest = {
            "key": key,
            "suite": spec.suite,
            "mirror": mirror,
            "packages": list(spec.packages),
            "kernel": {"package": kernel, "version": version, "release": kver, "modules": modules},
            "build_s": round(time.monotonic() - start, 1),
            "timings_s": timings,
            "rootfs_used_mib": used_mib,
            "size_mib": round(_allocated_bytes(out) / 2**20, 1),
            "built": time.time(),
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
        for p in out.iterdir():
            os.chmod(p, 0o644)
        os.chmod(out, 0o755)
        final = cache / key
        if final.exists():  # a broken earlier image (cached() refused it)
            shutil.rmtree(final)
        os.rename(out, final)
        progress("image", "", f"built {key} in {manifest['build_s']}s ({manifest['size_mib']} MiB)")
        return GuestImage(final, key, manifest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fetch_kernel(package: str, into: Path, vmlinuz: Path) -> str:
    """Download and unpack the kernel package (no install); returns the kernel release."""
    into.mkdir(parents=True)
    os.chmod(into.parent, 0o755)
    _run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", package], f"apt-get download {package}",
         cwd=into)
    debs = list(into.glob("*.deb"))
    if not debs:
        raise ProvisioningError(f"apt-get download {package} produced no .deb")
    _run(["dpkg-deb", "-x", str(debs[0]), str(into)], f"unpacking {debs[0].name}")
    images = sorted((into / "boot").glob("vmlinuz-*"))
    if not images:
        raise ProvisioningError(f"{package} has no /boot/vmlinuz-*: not a kernel image package")
    release = images[0].name.removeprefix("vmlinuz-")
    shutil.copyfile(images[0], vmlinuz)
    _run(["depmod", "-b", str(into), release], "depmod on the guest kernel's modules")
    return release


_POLICY_RC_D = "#!/bin/sh\n# no daemon starts while the image is built\nexit 101\n"


def _install_packages(rootfs: Path, packages: tuple[str, ...]) -> None:
    """apt-get install in the new root (its own mount namespace: /proc goes with it)."""
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text(_POLICY_RC_D)
    policy.chmod(0o755)
    script = (
        f"mount -t proc proc {rootfs}/proc && chroot {rootfs} /bin/sh -c "
        "'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
        + " ".join(packages) + " && apt-get clean'"
    )
    _run(["unshare", "--mount", "--propagation", "private", "--fork", "sh", "-c", script],
         f"installing {' '.join(packages)} in the guest root")
    policy.unlink()


def _finish_rootfs(rootfs: Path) -> None:
    """The guest init in, what a guest must not share (host keys, machine id) and docs out."""
    init = rootfs / initramfs.GUEST_INIT.lstrip("/")
    init.parent.mkdir(parents=True, exist_ok=True)
    init.write_text(guest.GUEST_INIT_SCRIPT)
    init.chmod(0o755)
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (rootfs / "etc/machine-id").write_text("")
    (rootfs / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
    for rel in TRIM:
        p = rootfs / rel
        if p.is_dir():
            shutil.rmtree(p)
            p.mkdir()


def _du_mib(path: Path) -> int:
    out = _run(["du", "-sm", str(path)], "measuring the root filesystem").stdout
    return int(out.split()[0])


def _allocated_bytes(path: Path) -> int:
    return sum(f.stat().st_blocks * 512 for f in path.iterdir() if f.is_file())
