"""PCIe passthrough, host side: read sysfs and libvirt's domain XML, say what is wrong.

Pure functions of a sysfs root (``/`` on a real host, a recorded tree under
``fixtures/pcie/`` in the project's tests) and of domain XML text (from ``qemu:///system``, or
libvirt's test driver in the tests), so the same code path runs on both.

What a working passthrough host shows:

- IOMMU on: ``/sys/kernel/iommu_groups`` has groups (the kernel command line asks for it
  with ``intel_iommu=on``; AMD enables it by default)
- each configured device exists (vendor/device as configured) and is bound to ``vfio-pci``
- every other device of its IOMMU group is bound to ``vfio-pci`` too, or is a PCI bridge;
  none is a host-critical device (a NIC, a storage controller) that passthrough would take
- the domain of the node carries a ``<hostdev>`` for each device, and no device is given to
  two domains
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .xmldefs import hostdev_addresses

VFIO = "vfio-pci"
#: PCI class codes (the top 16 bits of ``class``): bridges may share a group with a passed device
BRIDGE_CLASS = 0x0604
#: base classes the host cannot lose to a guest: mass storage, network
HOST_CRITICAL_BASE = {0x01: "storage controller", 0x02: "network controller"}
IOMMU_CMDLINE_FLAGS = ("intel_iommu=on", "amd_iommu=on", "iommu=pt", "iommu=on")


@dataclass(frozen=True)
class PciFacts:
    address: str
    exists: bool
    vendor: str = ""       # "10de"
    device: str = ""       # "2330"
    pci_class: int = 0     # 0x030200
    driver: str = ""       # "" when no driver is bound
    iommu_group: str = ""  # "" when the device is in no group

    @property
    def is_bridge(self) -> bool:
        return (self.pci_class >> 8) == BRIDGE_CLASS

    @property
    def critical_role(self) -> str | None:
        return HOST_CRITICAL_BASE.get(self.pci_class >> 16)

    def describe(self) -> str:
        driver = self.driver or "none"
        return f"{self.address} [{self.vendor}:{self.device}, class {self.pci_class:06x}, driver {driver}]"


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _link_name(path: Path) -> str:
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return ""


def pci_facts(root: Path, address: str) -> PciFacts:
    dev = Path(root) / "sys/bus/pci/devices" / address
    if not dev.exists():
        return PciFacts(address, False)
    cls = _read(dev / "class")
    return PciFacts(
        address=address,
        exists=True,
        vendor=_read(dev / "vendor").removeprefix("0x"),
        device=_read(dev / "device").removeprefix("0x"),
        pci_class=int(cls, 16) if cls else 0,
        driver=_link_name(dev / "driver"),
        iommu_group=_link_name(dev / "iommu_group"),
    )


def iommu_groups(root: Path) -> dict[str, list[str]]:
    """{group number: [member PCI addresses]} from ``/sys/kernel/iommu_groups``."""
    base = Path(root) / "sys/kernel/iommu_groups"
    if not base.is_dir():
        return {}
    return {g.name: sorted(d.name for d in (g / "devices").iterdir())
            for g in base.iterdir() if (g / "devices").is_dir()}


def iommu_problem(root: Path) -> str | None:
    """None when the IOMMU is on, else why not (naming the kernel command line fix)."""
    if iommu_groups(root):
        return None
    cmdline = _read(Path(root) / "proc/cmdline")
    flags = [f for f in IOMMU_CMDLINE_FLAGS if f in cmdline.split()]
    hint = (f"the kernel command line has {', '.join(flags)} but no group exists (IOMMU off in the firmware?)"
            if flags else "the kernel command line lacks intel_iommu=on (or amd_iommu=on) iommu=pt")
    return f"IOMMU is off: /sys/kernel/iommu_groups is empty; {hint}"


def device_problems(root: Path, device) -> list[str]:
    """What keeps ``device`` (a config ``PciDevice``) from being passed through safely."""
    f = pci_facts(root, device.pci_address)
    if not f.exists:
        return [f"{device.pci_address} does not exist on this host (lspci -s {device.pci_address})"]
    out = []
    for field, want in (("vendor", device.vendor_id), ("device", device.device_id)):
        got = getattr(f, field)
        if want and got.lower() != want.lower():
            out.append(f"{device.pci_address} has {field} id {got}, the config says {want}")
    want_driver = getattr(device, "host_driver", VFIO) or VFIO
    if f.driver != want_driver:
        out.append(f"{device.pci_address} is bound to {f.driver or 'no driver'}, must be {want_driver} "
                   f"(driverctl set-override {device.pci_address} {want_driver})")
    if not f.iommu_group:
        out.append(f"{device.pci_address} is in no IOMMU group")
        return out
    if device.iommu_group is not None and str(device.iommu_group) != f.iommu_group:
        out.append(f"{device.pci_address} is in IOMMU group {f.iommu_group}, the config says {device.iommu_group}")
    for member in iommu_groups(root).get(f.iommu_group, []):
        if member == device.pci_address:
            continue
        m = pci_facts(root, member)
        if m.critical_role:
            out.append(f"IOMMU group {f.iommu_group} of {device.pci_address} also holds {m.describe()}, a host "
                       f"{m.critical_role}: passing the group through takes it from the host")
        elif not m.is_bridge and m.driver != VFIO:
            out.append(f"IOMMU group {f.iommu_group} of {device.pci_address}: member {m.describe()} is not bound "
                       f"to {VFIO} (every device of a group must be, or be a bridge)")
    return out


def domain_problems(expected: dict[str, list[str]], domain_xmls: dict[str, str]) -> list[str]:
    """``expected``: {domain name: [PCI addresses]}; ``domain_xmls``: {domain name: XML}.

    Each expected device must be a ``<hostdev>`` of its domain, and no device may appear in
    two domains (libvirt would refuse to start the second, or worse, share it)."""
    out = []
    owners: dict[str, list[str]] = {}
    for name, xml_text in domain_xmls.items():
        for addr in hostdev_addresses(xml_text):
            owners.setdefault(addr, []).append(name)
    for name, addrs in expected.items():
        if name not in domain_xmls:
            out.append(f"domain {name} is not defined")
            continue
        have = set(hostdev_addresses(domain_xmls[name]))
        out += [f"domain {name} has no <hostdev> for {a}" for a in addrs if a.lower() not in have]
    out += [f"{a} is given to {len(o)} domains: {', '.join(sorted(o))}"
            for a, o in sorted(owners.items()) if len(o) > 1]
    return out


def planned_hostdevs(devices, root: Path = Path("/")) -> tuple[list[str], str | None]:
    """The PCI addresses to put into a domain, or ([], why they are left out).

    Without an IOMMU a domain with ``<hostdev>`` does not start at all ("host doesn't
    support passthrough of host PCI devices"): the VM comes up without them and the
    host-side checks report the reason."""
    if not devices:
        return [], None
    addrs = [d.pci_address for d in devices]
    why = iommu_problem(root)
    if why:
        return [], f"PCIe passthrough of {', '.join(addrs)} left out: {why}"
    return addrs, None


def libvirt_domain_xmls(conn) -> dict[str, str]:
    """{name: XML} of every domain a libvirt connection knows (qemu:///system or test:///...)."""
    return {d.name(): d.XMLDesc(0) for d in conn.listAllDomains()}


def libvirt_pci_groups(conn) -> dict[str, list[str]]:
    """{PCI address: [addresses in its IOMMU group]} from libvirt's node devices."""
    import xml.etree.ElementTree as ET

    import libvirt

    out: dict[str, list[str]] = {}
    for dev in conn.listAllDevices(libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV):
        cap = ET.fromstring(dev.XMLDesc(0)).find("capability[@type='pci']")
        if cap is None:
            continue
        vals = [int(cap.findtext(k, "0"), 0) for k in ("domain", "bus", "slot", "function")]
        addr = f"{vals[0]:04x}:{vals[1]:02x}:{vals[2]:02x}.{vals[3]:x}"
        members = []
        for a in cap.findall("iommuGroup/address"):
            v = [int(a.get(k, "0"), 16) for k in ("domain", "bus", "slot", "function")]
            members.append(f"{v[0]:04x}:{v[1]:02x}:{v[2]:02x}.{v[3]:x}")
        out[addr] = sorted(members)
    return out
