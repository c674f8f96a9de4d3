"""Layer 1, PCIe passthrough, host side: the libvirt host can hand each configured device to
its VM safely — IOMMU on, the device and every member of its IOMMU group bound to vfio-pci
(bridges excepted, no host NIC or disk controller among them), and the node's domain
carrying a ``<hostdev>`` for it, no device given to two domains.

Runs where the config declares ``pcie_passthrough`` devices and the provider is libvirt.
On a host that has none of the configured devices and no IOMMU (a VM, a laptop) there is
nothing to check: the module skips with that reason (a failure under ``--hpc-strict``).
``HPCV_SYSFS_ROOT`` points the checks at a recorded sysfs tree instead of ``/``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_hpcvalidate.providers.libvirt import host as libvirt_host, passthrough
from pytest_hpcvalidate.providers.libvirt.cleanup import domain_name
from pytest_hpcvalidate.capabilities import not_applicable

pytestmark = pytest.mark.requires("pcie")


@pytest.fixture(scope="module")
def host_root(hpc_config) -> Path:
    if hpc_config.provider != "libvirt":
        not_applicable("host-side passthrough checks read the libvirt host; "
                    f"this cluster's provider is {hpc_config.provider}")
    root = Path(os.environ.get("HPCV_SYSFS_ROOT", "/"))
    devices = [d for n in hpc_config.resolved_nodes() for d in n.pcie]
    present = [d for d in devices if passthrough.pci_facts(root, d.pci_address).exists]
    if not present and passthrough.iommu_problem(root):
        pytest.skip(f"this host has none of the configured PCIe devices ({', '.join(d.pci_address for d in devices)}) "
                    "and no IOMMU groups: it cannot pass devices through (a VM or a machine without them)")
    return root


def test_iommu_is_enabled(host_root):
    problem = passthrough.iommu_problem(host_root)
    assert problem is None, f"libvirt host: {problem}"


def test_devices_ready_for_passthrough(compute_name, node_spec, host_root):
    """Each configured device of the node exists, is bound to vfio-pci, and its IOMMU group is safe to hand over."""
    devices = node_spec[compute_name].pcie
    if not devices:
        not_applicable(f"{compute_name} has no PCIe passthrough devices in the config")
    problems = [p for d in devices for p in passthrough.device_problems(host_root, d)]
    assert not problems, f"{compute_name}: " + "; ".join(problems)


@pytest.fixture(scope="module")
def domain_xmls(request, hpc_config, host_root) -> dict[str, str]:
    """{domain: XML} from the config's libvirt URI (after provisioning, unless it is libvirt's test driver)."""
    uri = hpc_config.libvirt.uri if hpc_config.libvirt else "qemu:///system"
    if not uri.startswith("test:"):
        request.getfixturevalue("cluster")  # the domains exist once the cluster is provisioned
    conn = libvirt_host.libvirt_module().openReadOnly(uri)
    try:
        return passthrough.libvirt_domain_xmls(conn)
    finally:
        conn.close()


def test_each_domain_holds_its_devices(hpc_config, domain_xmls):
    expected = {domain_name(hpc_config.name, n.name): [d.pci_address for d in n.pcie]
                for n in hpc_config.resolved_nodes() if n.pcie}
    problems = passthrough.domain_problems(expected, domain_xmls)
    assert not problems, "libvirt domains: " + "; ".join(problems)
