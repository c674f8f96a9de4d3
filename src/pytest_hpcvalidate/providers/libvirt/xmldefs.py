"""libvirt XML for a cluster: the isolated network and one domain per node (pure functions).

Choices that matter here (see ../shared/vm-and-container-notes.md):

- the network has no ``<forward>`` (isolated) and ``<dns enable='no'/>`` (no dnsmasq);
  the host keeps the subnet's gateway address on the bridge so it reaches the guests
- direct kernel boot (kernel, per-node initrd, command line), a qcow2 overlay on the shared
  root image as the only disk, ``cache='unsafe'`` (the overlay is thrown away anyway)
- QEMU runs as root without relabelling (``<seclabel model='dac' relabel='no'>``): libvirt
  would otherwise chown the shared base image and never give it back
- virtio-fs needs shared memory (``memfd``) and libvirt's path to Debian's C virtiofsd;
  libvirt 9.0 takes cache modes ``none`` and ``always`` only
- the serial console goes to a file the provider quotes when a guest does not come up
"""

from __future__ import annotations

import hashlib
import ipaddress
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

VIRTIOFSD = "/usr/lib/qemu/virtiofsd"
#: the config's ``cache: auto`` (virtiofsd's default) maps to what libvirt 9.0 accepts;
#: ``none`` is the fastest under TCG (measured: ~4x the write rate of the default)
CACHE_MODES = {"auto": "none", "none": "none", "always": "always"}


@dataclass(frozen=True)
class FsShare:
    """A host directory exported to a guest over virtio-fs."""

    tag: str
    host_path: str
    cache: str = "none"
    readonly: bool = False


@dataclass(frozen=True)
class PciHostdev:
    """A host PCI device (``0000:01:00.0``) handed to the guest with vfio."""

    address: str

    def parts(self) -> dict[str, str]:
        dom, bus, rest = self.address.split(":")
        slot, fn = rest.split(".")
        return {"domain": f"0x{dom}", "bus": f"0x{bus}", "slot": f"0x{slot}", "function": f"0x{fn}"}


@dataclass(frozen=True)
class DomainSpec:
    name: str
    domain_type: str  # "qemu" (TCG) or "kvm"
    vcpus: int
    memory_mib: int
    kernel: str
    initrd: str
    cmdline: str
    disk: str
    network: str
    mac: str
    console_log: str
    shares: tuple[FsShare, ...] = ()
    hostdevs: tuple[PciHostdev, ...] = ()
    emulator: str = "/usr/bin/qemu-system-x86_64"
    metadata: dict = field(default_factory=dict)


METADATA_NS = "https://github.com/pytest-hpcvalidate/libvirt"


def mac_for(cluster: str, node: str) -> str:
    """A stable locally administered MAC in QEMU's 52:54:00 range, from cluster and node."""
    d = hashlib.sha1(f"{cluster}/{node}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in d[:3])


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, {k.rstrip("_"): v for k, v in attrs.items()})
    if text is not None:
        el.text = text
    return el


def network_xml(name: str, bridge: str, gateway: str, subnet: str, mtu: int) -> str:
    net = ET.Element("network")
    _sub(net, "name", name)
    _sub(net, "bridge", name=bridge, stp="off", delay="0")
    _sub(net, "mtu", size=str(mtu))
    _sub(net, "dns", enable="no")
    _sub(net, "ip", address=gateway, prefix=str(ipaddress.ip_network(subnet, strict=False).prefixlen))
    return ET.tostring(net, encoding="unicode")


def domain_xml(d: DomainSpec) -> str:
    dom = ET.Element("domain", type=d.domain_type)
    _sub(dom, "name", d.name)
    if d.metadata:
        meta = _sub(dom, "metadata")
        ET.SubElement(meta, f"{{{METADATA_NS}}}cluster", {k: str(v) for k, v in d.metadata.items()})
    _sub(dom, "memory", str(d.memory_mib), unit="MiB")
    _sub(dom, "vcpu", str(d.vcpus))
    os_ = _sub(dom, "os")
    _sub(os_, "type", "hvm", arch="x86_64", machine="q35")
    _sub(os_, "kernel", d.kernel)
    _sub(os_, "initrd", d.initrd)
    _sub(os_, "cmdline", d.cmdline)
    feats = _sub(dom, "features")
    _sub(feats, "acpi")
    if d.domain_type == "kvm":
        _sub(dom, "cpu", mode="host-passthrough")
    if d.shares:
        mb = _sub(dom, "memoryBacking")
        _sub(mb, "source", type="memfd")
        _sub(mb, "access", mode="shared")
    _sub(dom, "clock", offset="utc")
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        _sub(dom, event, "destroy")
    devs = _sub(dom, "devices")
    _sub(devs, "emulator", d.emulator)
    disk = _sub(devs, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type="qcow2", cache="unsafe", discard="unmap")
    _sub(disk, "source", file=d.disk)
    _sub(disk, "target", dev="vda", bus="virtio")
    nic = _sub(devs, "interface", type="network")
    _sub(nic, "source", network=d.network)
    _sub(nic, "mac", address=d.mac)
    _sub(nic, "model", type="virtio")
    for s in d.shares:
        fs = _sub(devs, "filesystem", type="mount", accessmode="passthrough")
        _sub(fs, "driver", type="virtiofs", queue="1024")
        binary = _sub(fs, "binary", path=VIRTIOFSD)
        _sub(binary, "cache", mode=CACHE_MODES.get(s.cache, s.cache))
        _sub(fs, "source", dir=s.host_path)
        _sub(fs, "target", dir=s.tag)
        if s.readonly:
            _sub(fs, "readonly")
    for h in d.hostdevs:
        hd = _sub(devs, "hostdev", mode="subsystem", type="pci", managed="yes")
        _sub(hd, "driver", name="vfio")
        src = _sub(hd, "source")
        _sub(src, "address", **h.parts())
    serial = _sub(devs, "serial", type="file")
    _sub(serial, "source", path=d.console_log)
    _sub(serial, "target", port="0")
    rng = _sub(devs, "rng", model="virtio")
    _sub(rng, "backend", "/dev/urandom", model="random")
    _sub(devs, "memballoon", model="none")
    label = _sub(dom, "seclabel", type="static", model="dac", relabel="no")
    _sub(label, "label", "+0:+0")
    return ET.tostring(dom, encoding="unicode")


def hostdev_addresses(xml_text: str) -> list[str]:
    """The PCI addresses (``0000:01:00.0``) of a domain's ``<hostdev type='pci'>`` devices."""
    root = ET.fromstring(xml_text)
    out = []
    for hd in root.iter("hostdev"):
        if hd.get("type") != "pci":
            continue
        a = hd.find("source/address")
        if a is None:
            continue
        vals = [int(a.get(k, "0"), 16) for k in ("domain", "bus", "slot", "function")]
        out.append(f"{vals[0]:04x}:{vals[1]:02x}:{vals[2]:02x}.{vals[3]:x}")
    return out
