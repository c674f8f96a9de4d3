"""The libvirt provider's pure parts: the initramfs archive, module order, libvirt XML, the
guest's per-node files, the image key, the KVM decision. No VM, no libvirtd needed."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_hpcvalidate.config.model import ClusterConfig
from pytest_hpcvalidate.providers.libvirt import guest, host, image, initramfs, xmldefs
from pytest_hpcvalidate.providers.local.provider import spec_from_config

DEP = """kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/fs/fuse/virtiofs.ko.xz: kernel/fs/fuse/fuse.ko.xz kernel/drivers/virtio/virtio.ko
kernel/fs/fuse/fuse.ko.xz:
"""


def test_modules_load_dependencies_first_each_once_and_skip_builtins():
    order = initramfs.load_order(initramfs.parse_modules_dep(DEP), ("virtio_pci", "virtio_net", "virtiofs", "virtio_blk"))
    names = [initramfs.module_name(p) for p in order]
    assert len(names) == len(set(names))
    for before, after in (("virtio", "virtio_pci"), ("failover", "net_failover"), ("net_failover", "virtio_net"),
                          ("fuse", "virtiofs")):
        assert names.index(before) < names.index(after), names
    assert "virtio_blk" not in names  # not in modules.dep: built in


@pytest.mark.skipif(not shutil.which("busybox") and not Path("/bin/busybox").exists(), reason="busybox-static not installed")
def test_newc_archive_lists_as_cpio_with_parents_and_modes(tmp_path):
    data = initramfs.newc_archive({"hpcv-node/etc/munge/munge.key": (b"k" * 1024, 0o400), "init": (b"#!/bin/sh\n", 0o755)},
                                  symlinks={"bin/sh": "busybox"})
    assert len(data) % 4 == 0
    listing = subprocess.run(["/bin/busybox", "cpio", "-tv"], input=data, capture_output=True).stdout.decode()
    lines = {line.split()[-1] if "->" not in line else line.split()[-3]: line for line in listing.splitlines()}
    assert lines["hpcv-node"].startswith("drwxr-xr-x") and lines["hpcv-node/etc/munge"].startswith("d")
    assert lines["hpcv-node/etc/munge/munge.key"].startswith("-r--------") and " 1024 " in lines["hpcv-node/etc/munge/munge.key"]
    assert lines["init"].startswith("-rwxr-xr-x") and lines["bin/sh"].startswith("l")
    joined = initramfs.append_archive(b"\x1f\x8b123", data)
    assert joined[:5] == b"\x1f\x8b123" and joined.index(b"070701") % 4 == 0


def test_init_loads_modules_then_hands_over_to_tini_and_the_guest_init():
    text = initramfs.render_init(["virtio.ko", "virtio_blk.ko"])
    assert text.index("insmod /lib/modules/virtio.ko") < text.index("insmod /lib/modules/virtio_blk.ko")
    assert text.rstrip().endswith(f"exec switch_root /newroot /usr/bin/tini -s -g -- {initramfs.GUEST_INIT}")
    assert f"cp -a /{initramfs.NODE_DIR}/. /newroot/" in text


def _domain(**kw) -> xmldefs.DomainSpec:
    base = dict(name="hpcv-x-c1", domain_type="qemu", vcpus=1, memory_mib=384, kernel="/i/vmlinuz", initrd="/w/initrd.img",
                cmdline="console=ttyS0", disk="/w/overlay.qcow2", network="hpcv-x", mac=xmldefs.mac_for("x", "c1"),
                console_log="/w/console.log")
    base.update(kw)
    return xmldefs.DomainSpec(**base)


def test_domain_xml_for_tcg_with_virtio_fs_and_hostdev():
    d = _domain(shares=(xmldefs.FsShare("data", "/srv/data", xmldefs.CACHE_MODES["auto"]),),
                hostdevs=(xmldefs.PciHostdev("0000:01:00.1"),))
    root = ET.fromstring(xmldefs.domain_xml(d))
    assert root.get("type") == "qemu" and root.find("cpu") is None
    assert root.find("memoryBacking/source").get("type") == "memfd"
    assert root.find("memoryBacking/access").get("mode") == "shared"
    fs = root.find("devices/filesystem")
    assert fs.find("binary").get("path") == "/usr/lib/qemu/virtiofsd"
    assert fs.find("binary/cache").get("mode") == "none"  # libvirt 9.0 takes none|always only
    assert (fs.find("source").get("dir"), fs.find("target").get("dir")) == ("/srv/data", "data")
    assert root.find("seclabel").get("relabel") == "no"
    assert xmldefs.hostdev_addresses(xmldefs.domain_xml(d)) == ["0000:01:00.1"]


def test_domain_without_shares_has_no_shared_memory_and_kvm_gets_host_cpu():
    root = ET.fromstring(xmldefs.domain_xml(_domain(domain_type="kvm")))
    assert root.find("memoryBacking") is None and root.find("cpu").get("mode") == "host-passthrough"


def test_network_is_isolated_without_dnsmasq():
    root = ET.fromstring(xmldefs.network_xml("hpcv-x", "hpcv-x", "10.234.5.1", "10.234.5.0/24", 1500))
    assert root.find("forward") is None and root.find("dns").get("enable") == "no"
    assert (root.find("ip").get("address"), root.find("ip").get("prefix")) == ("10.234.5.1", "24")
    assert xmldefs.mac_for("x", "c1") != xmldefs.mac_for("x", "c2") and xmldefs.mac_for("x", "c1").startswith("52:54:00:")


def test_node_files_carry_identity_keys_and_the_local_providers_slurm_conf():
    model = ClusterConfig.model_validate({"name": "x", "network": {"subnet": "10.234.5.0/24", "bridge": "hpcv-x"},
                                          "compute": [{"names": "c[1-2]", "cpus": 2, "memory_mb": 900}]})
    spec = spec_from_config(model)
    import dataclasses

    spec = dataclasses.replace(spec, work_dir=guest.GUEST_WORK_DIR)
    secrets = guest.ClusterSecrets(b"m" * 1024, b"HOSTKEY", "ssh-ed25519 AAAAhost h\n", b"CLIENT", "ssh-ed25519 AAAAc c\n")
    mounts = [guest.GuestMount("data", "/mnt/data", guest.mount_options("defaults,rw,_netdev,relatime"))]
    files = guest.node_files(spec, spec.compute[1], secrets, mounts, 24)
    env = files["etc/hpcv/node.env"][0].decode()
    assert "HPCV_HOSTNAME=c2" in env and "HPCV_ADDRESS=10.234.5.12" in env and "HPCV_ROLE=compute" in env
    assert files["etc/hpcv/mounts"][0] == b"data /mnt/data rw,relatime\n"
    assert files["etc/munge/munge.key"] == (b"m" * 1024, 0o400)
    assert files["etc/ssh/ssh_known_hosts"][0].decode().splitlines()[1] == "c1,10.234.5.11 ssh-ed25519 AAAAhost"
    conf = files["etc/slurm/slurm.conf"][0].decode()
    assert "NodeName=c2 NodeAddr=10.234.5.12" in conf and "SlurmdSpoolDir=/var/lib/hpcv/nodes/%n/spool" in conf
    assert "CgroupPlugin=cgroup/v2" in files["etc/slurm/cgroup.conf"][0].decode()
    with pytest.raises(ValueError, match="whitespace"):
        guest.render_mounts([guest.GuestMount("a b", "/x")])
    assert "etc/hpcv/users.passwd" not in files  # no slurm.users: the guest's own files as they are
    with_users = guest.node_files(dataclasses.replace(spec, users=("alice", "bob")), spec.compute[1], secrets, mounts, 24)
    home = Path(spec.shared_dir) / "home"
    assert with_users["etc/hpcv/users.passwd"] == (
        f"alice:x:20000:20000:hpcvalidate test user:{home}/alice:/bin/sh\n"
        f"bob:x:20001:20001:hpcvalidate test user:{home}/bob:/bin/sh\n".encode(), 0o644)
    assert with_users["etc/hpcv/users.group"][0] == b"alice:x:20000:\nbob:x:20001:\n"


def test_image_key_follows_packages_and_kernel_only():
    spec = image.ImageSpec()
    key = image.image_key(spec, "linux-image-6.1.0-56-cloud-amd64", "6.1.192-2")
    assert key == image.image_key(image.ImageSpec(mirror="http://other/debian"), "linux-image-6.1.0-56-cloud-amd64", "6.1.192-2")
    assert key != image.image_key(spec.with_extra(["gcc"]), "linux-image-6.1.0-56-cloud-amd64", "6.1.192-2")
    assert key != image.image_key(spec, "linux-image-6.1.0-56-cloud-amd64", "6.1.192-3")
    assert spec.with_extra(["fio", "gcc"]).packages.count("fio") == 1


def test_host_mirror_from_deb822_and_one_line_sources(tmp_path):
    deb822 = tmp_path / "debian.sources"
    deb822.write_text("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n")
    assert image.host_mirror((tmp_path / "missing", deb822)) == "http://mirror.example/debian"
    oneline = tmp_path / "sources.list"
    oneline.write_text("deb [arch=amd64] http://m2.example/debian bookworm main\n")
    assert image.host_mirror((oneline,)) == "http://m2.example/debian"
    assert image.host_mirror(()) == image.FALLBACK_MIRROR


def test_kvm_is_not_trusted_inside_a_vm(tmp_path):
    dev = tmp_path / "kvm"
    dev.write_text("")
    bare = "flags\t\t: fpu vme vmx sse2\n"
    assert host.kvm_verdict(bare, dev)[0] is True
    ok, why = host.kvm_verdict("flags\t\t: fpu vmx hypervisor\n", dev)
    assert not ok and "nested KVM" in why
    assert host.kvm_verdict("flags\t\t: fpu sse2\n", dev) == (False, "the CPU shows no VT-x/AMD-V flags")
    assert host.kvm_verdict(bare, tmp_path / "none")[0] is False


def test_a_socket_left_by_a_dead_daemon_is_not_taken_for_a_running_one(tmp_path):
    """CI ran on an image whose /run kept libvirtd's socket without the daemon: every connection
    was refused. ``_listening`` must tell the two apart so the daemon is started again."""
    import socket

    path = tmp_path / "daemon.sock"
    assert host._listening(path) is False  # missing
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(str(path))
        live.listen(1)
        assert host._listening(path) is True
    assert path.exists() and host._listening(path) is False  # the daemon is gone, its file stays


def test_cleanup_without_a_usable_libvirt_says_so_in_one_line(tmp_path):
    """A machine whose libvirt-python cannot load (no libvirt.so.0: the GPU machine, a guest) but
    that holds libvirt clusters' files: ``cleanup`` names the problem, no traceback."""
    import os
    import sys

    (tmp_path / "lv-old").mkdir()
    code = ("import sys; sys.modules['libvirt'] = None; sys.argv = ['hpcv', 'cleanup', '--cluster', 'hpcvnosuch'];"
            "from pytest_hpcvalidate.__main__ import main; sys.exit(main())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "HPCV_LIBVIRT_STATE_ROOT": str(tmp_path)})
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"cleanup: {tmp_path} holds libvirt clusters' files, and libvirt cannot be used here")


def test_monitoring_is_refused_before_anything_is_made(tmp_path, monkeypatch):
    """The guests run no Prometheus: a config that asks for monitoring stops with one line
    naming the section and what to use instead, before a domain or network exists. (Were it
    not refused, the engine's up() fails the test instead of booting VMs.)"""
    from pytest_hpcvalidate.providers.base import ProvisioningError
    from pytest_hpcvalidate.providers.libvirt.provider import LibvirtCluster, LibvirtProvider

    monkeypatch.setattr(LibvirtCluster, "up", lambda self, *a, **k: pytest.fail("provisioning started"))

    model = ClusterConfig.model_validate({"name": "t", "provider": "libvirt", "network": {"subnet": "10.9.0.0/24",
                                          "bridge": "br-t"}, "compute": [{"names": "c1"}], "monitoring": {}})
    with pytest.raises(ProvisioningError, match=r"^monitoring: the libvirt provider does not run Prometheus"):
        LibvirtProvider(tmp_path).provision(model)
    assert list(tmp_path.iterdir()) == []


def test_a_vm_gets_room_for_its_kernel_and_one_smaller_than_slurm_declares_is_said_to_be(tmp_path, monkeypatch):
    """A VM gets memory_mb and an eighth more (a 512 MiB guest has a MemTotal of 470 MiB): Slurm's
    RealMemory then holds inside it and the capacity check applies. Capped by this host's fair
    share or by libvirt.guest_memory_mb/guest_cpus, the node says how it is smaller instead."""
    from types import SimpleNamespace

    from pytest_hpcvalidate.providers.libvirt import provider as lvp

    assert [lvp.guest_ram_mib(m) for m in (384, 512, 16384)] == [448, 576, 18432]
    doc = {"name": "t", "provider": "libvirt", "network": {"subnet": "10.9.0.0/24", "bridge": "br-t"},
           "compute": [{"names": "c1", "cpus": 1, "memory_mb": 512}]}
    engine = lvp.LibvirtProvider(tmp_path).make_engine(ClusterConfig.model_validate(doc))
    c1 = next(n for n in engine.spec.nodes if n.name == "c1")
    monkeypatch.setattr(lvp, "_available_mib", lambda: 8192)
    assert engine._guest_size(c1) == (1, 576)
    monkeypatch.setattr(lvp, "_available_mib", lambda: 1000)  # 400 MiB a node
    assert engine._guest_size(c1) == (1, 400)
    engine.state = SimpleNamespace(data={"guests": {"c1": {"vcpus": 1, "memory_mib": 576}}})
    assert engine._short_guest(c1) == "" and engine._size_facts(c1) == {}
    engine.state.data["guests"]["c1"]["memory_mib"] = 400
    assert engine._short_guest(c1) == ("the VM got 1 vCPU(s) and 400 MiB of RAM for Slurm's 1 CPU(s) and 512 MiB: "
                                       "libvirt.guest_cpus, libvirt.guest_memory_mb or this host's fair share")
    assert set(engine._size_facts(c1)) == {"declared_resources"}  # its one vCPU is still Slurm's layout
    engine.state.data["guests"]["c1"]["vcpus"] = 2  # libvirt.guest_cpus above Slurm's CPUs: two sockets, not one
    assert engine._size_facts(c1)["cpu_layout_differs"] == ("the VM got 2 vCPU(s) for Slurm's 1 CPU(s): slurm.conf's "
                                                            "CPUs= alone is not its layout")
    engine.state = SimpleNamespace(data={})
    assert engine._size_facts(c1)["cpu_layout_differs"] == "the VM's size is not recorded"
    pinned = lvp.LibvirtProvider(tmp_path).make_engine(ClusterConfig.model_validate(
        {**doc, "libvirt": {"guest_memory_mb": 300, "guest_cpus": 1}}))
    assert pinned._guest_size(c1) == (1, 300)
