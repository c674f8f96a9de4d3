"""The guests' initramfs: busybox, the virtio modules Debian's cloud kernel builds as modules,
and an ``/init`` that mounts the root disk and hands over to the node's init.

Debian's cloud kernel has virtio, virtio_pci, virtio_blk, virtio_net and virtiofs as modules
and no ``ip=`` autoconfiguration, so a small initramfs must load them (in ``modules.dep``
order, with busybox ``insmod``) before the root disk exists. ext4 is built in.

Per-node files (hostname, keys, Slurm configuration) travel as a second, uncompressed
``newc`` archive appended to the shared compressed one: the kernel unpacks concatenated
archives in order, so a node's initrd is ``base + node.cpio`` and nothing is written into a
disk image. ``/init`` copies ``/hpcv-node/`` over the root filesystem before ``switch_root``.
"""

from __future__ import annotations

import gzip
import io
import lzma
from pathlib import Path

#: modules the guest needs, by name; their dependencies come from modules.dep (the root
#: filesystem has no /lib/modules, so whatever a guest uses later is loaded here, once)
BOOT_MODULES = (
    # the root disk, the NIC, entropy for sshd/munged, the virtio-fs shares
    "virtio_pci", "virtio_blk", "virtio_net", "virtio_rng", "virtiofs",
    # the local provider run inside a guest (a namespace cluster in a VM, e.g. on the guests'
    # cgroup v2): its bridge (modules.dep adds stp and llc), one veth pair per node, and the
    # overlay on /dev that gives a node its GPUs and hides the others
    "bridge", "veth", "overlay",
)
#: the directory of the per-node archive inside the initramfs
NODE_DIR = "hpcv-node"
#: the program /init hands over to (in the root filesystem)
GUEST_INIT = "/usr/local/sbin/hpcv-init"
ROOT_DEVICE = "/dev/vda"


# -- the cpio "newc" format (what the kernel's initramfs unpacker reads) -----------------------

def _newc_entry(name: str, mode: int, data: bytes = b"", ino: int = 0) -> bytes:
    namez = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(namez), 0]
    head = b"070701" + b"".join(f"{v:08X}".encode() for v in fields)
    out = head + namez
    out += b"\0" * (-len(out) % 4)
    out += data
    out += b"\0" * (-len(out) % 4)
    return out


def newc_archive(files: dict[str, tuple[bytes, int]], dirs: tuple[str, ...] | list[str] = (),
                 symlinks: dict[str, str] | None = None) -> bytes:
    """A newc archive of ``files`` (path -> (data, permission bits)), ``dirs`` and ``symlinks``
    (path -> target). Parent directories are added (the kernel does not create them)."""
    all_dirs: set[str] = set(d.strip("/") for d in dirs)
    for path in [*files, *(symlinks or {})]:
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            all_dirs.add("/".join(parts[:i]))
    out = io.BytesIO()
    ino = 1
    for d in sorted(all_dirs, key=lambda p: (p.count("/"), p)):
        if d:
            out.write(_newc_entry(d, 0o040755, ino=ino))
            ino += 1
    for path, target in sorted((symlinks or {}).items()):
        out.write(_newc_entry(path.strip("/"), 0o120777, target.encode(), ino=ino))
        ino += 1
    for path, (data, perm) in sorted(files.items()):
        out.write(_newc_entry(path.strip("/"), 0o100000 | perm, data, ino=ino))
        ino += 1
    out.write(_newc_entry("TRAILER!!!", 0))
    return out.getvalue()


def append_archive(base: bytes, extra: bytes) -> bytes:
    """``base`` (a compressed initramfs) followed by ``extra``, NUL-padded so the second
    archive starts 4-byte aligned as the kernel's unpacker requires."""
    return base + b"\0" * (-len(base) % 4) + extra


# -- kernel modules ---------------------------------------------------------------------------

def parse_modules_dep(text: str) -> dict[str, list[str]]:
    """``modules.dep`` -> {relative .ko path: [relative paths it depends on]}."""
    deps: dict[str, list[str]] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        mod, _, rest = line.partition(":")
        deps[mod.strip()] = rest.split()
    return deps


def module_name(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    for ext in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if base.endswith(ext):
            base = base[: -len(ext)]
    return base.replace("-", "_")


def load_order(deps: dict[str, list[str]], wanted: tuple[str, ...] = BOOT_MODULES) -> list[str]:
    """The module files to insmod, dependencies first, each once. A wanted module that is not
    in ``deps`` is taken to be built into the kernel and skipped."""
    by_name = {module_name(p): p for p in deps}
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        # modules.dep lists the full closure; loading each dependency's own deps first keeps it ordered
        for dep in deps.get(path, []):
            visit(dep)
        order.append(path)

    for name in wanted:
        if name in by_name:
            visit(by_name[name])
    return order


def module_bytes(path: Path) -> bytes:
    """A module file's contents, decompressed (busybox insmod takes plain .ko files)."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    return data


# -- /init --------------------------------------------------------------------------------------

def render_init(modules: list[str]) -> str:
    """The initramfs ``/init`` (busybox sh). ``modules``: file names under /lib/modules, in load order."""
    inserts = "\n".join(f"insmod /lib/modules/{m} 2>/dev/null || echo 'hpcv-initramfs: insmod {m} failed'"
                        for m in modules)
    return f"""#!/bin/busybox sh
# generated by pytest-hpcvalidate: load the virtio modules, mount the root disk, hand over
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
{inserts}
i=0
while [ ! -b {ROOT_DEVICE} ]; do
  i=$((i + 1)); [ $i -gt 600 ] && {{ echo "hpcv-initramfs: no {ROOT_DEVICE} after 30s"; poweroff -f; }}
  sleep 0.05
done
mkdir -p /newroot
mount -t ext4 -o rw {ROOT_DEVICE} /newroot || {{ echo "hpcv-initramfs: cannot mount {ROOT_DEVICE}"; poweroff -f; }}
[ -d /{NODE_DIR} ] && cp -a /{NODE_DIR}/. /newroot/
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /usr/bin/tini -s -g -- {GUEST_INIT}
"""


def build_base_initramfs(busybox: Path, module_root: Path, kernel_version: str) -> tuple[bytes, list[str]]:
    """The shared compressed initramfs and the modules it loads (names, in order)."""
    kdir = module_root / "lib" / "modules" / kernel_version
    order = load_order(parse_modules_dep((kdir / "modules.dep").read_text()))
    files: dict[str, tuple[bytes, int]] = {"bin/busybox": (busybox.read_bytes(), 0o755)}
    names = []
    for rel in order:
        name = module_name(rel) + ".ko"
        files[f"lib/modules/{name}"] = (module_bytes(kdir / rel), 0o644)
        names.append(name)
    files["init"] = (render_init(names).encode(), 0o755)
    archive = newc_archive(files, dirs=["proc", "sys", "dev", "newroot", "bin", "sbin", "usr/bin", "usr/sbin"],
                           symlinks={"bin/sh": "busybox"})
    return gzip.compress(archive, compresslevel=6, mtime=0), names
