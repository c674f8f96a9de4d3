"""PCIe passthrough host checks against sysfs trees modelled on a passthrough workstation
(fixtures/pcie/, see its README) and libvirt's test driver: the healthy host passes, each
broken variant is caught with a message naming the device and what is wrong — first as
pure functions, then through the shipped suite (suites/l1_pcie/test_host_passthrough.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_hpcvalidate.config.model import PciDevice
from pytest_hpcvalidate.providers.libvirt import passthrough

PCIE = Path(__file__).resolve().parents[2] / "fixtures" / "pcie"
GPU = PciDevice(pci_address="0000:01:00.0", vendor_id="10de", device_id="2805", iommu_group=1)
AUDIO = PciDevice(pci_address="0000:01:00.1", device_type="audio", vendor_id="10de", device_id="22bd", iommu_group=1)


def test_healthy_host_has_iommu_and_vfio_bound_groups():
    root = PCIE / "passthrough-ready"
    assert passthrough.iommu_problem(root) is None
    assert passthrough.iommu_groups(root)["1"] == ["0000:01:00.0", "0000:01:00.1"]
    assert passthrough.device_problems(root, GPU) == []
    assert passthrough.device_problems(root, AUDIO) == []
    facts = passthrough.pci_facts(root, "0000:01:00.0")
    assert (facts.vendor, facts.device, facts.driver, facts.iommu_group) == ("10de", "2805", "vfio-pci", "1")


def test_iommu_off_is_reported_with_the_kernel_command_line_fix():
    problem = passthrough.iommu_problem(PCIE / "iommu-off")
    assert problem is not None and "iommu_groups is empty" in problem and "intel_iommu=on" in problem
    problems = passthrough.device_problems(PCIE / "iommu-off", GPU)
    assert any("bound to nvidia, must be vfio-pci" in p for p in problems), problems
    assert any("in no IOMMU group" in p for p in problems), problems


def test_device_left_on_its_host_driver_is_caught():
    problems = passthrough.device_problems(PCIE / "gpu-on-host-driver", GPU)
    assert problems == ["0000:01:00.0 is bound to nvidia, must be vfio-pci (driverctl set-override 0000:01:00.0 vfio-pci)"]


def test_group_member_not_on_vfio_is_caught_from_the_gpu_side():
    problems = passthrough.device_problems(PCIE / "group-member-unbound", GPU)
    assert len(problems) == 1 and "member 0000:01:00.1" in problems[0] and "snd_hda_intel" in problems[0], problems


def test_group_shared_with_the_host_nic_is_caught():
    problems = passthrough.device_problems(PCIE / "group-shares-host-nic", GPU)
    assert any("0000:02:00.0" in p and "network controller" in p for p in problems), problems


def test_missing_device_and_wrong_ids_are_caught():
    root = PCIE / "passthrough-ready"
    assert passthrough.device_problems(root, PciDevice(pci_address="0000:09:00.0"))[0].startswith(
        "0000:09:00.0 does not exist on this host")
    wrong = PciDevice(pci_address="0000:01:00.0", vendor_id="10de", device_id="2330", iommu_group=7)
    problems = passthrough.device_problems(root, wrong)
    assert "0000:01:00.0 has device id 2805, the config says 2330" in problems
    assert "0000:01:00.0 is in IOMMU group 1, the config says 7" in problems


def _test_driver(name: str):
    libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed (setup.sh installs it)")
    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    return libvirt.openReadOnly(f"test://{PCIE / name}")


EXPECTED = {"hpcv-hpc-cluster-compute-01": ["0000:01:00.0", "0000:01:00.1"],
            "hpcv-hpc-cluster-compute-02": ["0000:07:00.0", "0000:07:00.1"]}


def test_domains_from_the_test_driver_hold_their_hostdevs():
    conn = _test_driver("libvirt-test-node.xml")
    try:
        assert passthrough.domain_problems(EXPECTED, passthrough.libvirt_domain_xmls(conn)) == []
        groups = passthrough.libvirt_pci_groups(conn)
        assert groups["0000:07:00.1"] == ["0000:07:00.0", "0000:07:00.1"]
    finally:
        conn.close()


def test_missing_and_doubly_assigned_hostdevs_are_caught():
    conn = _test_driver("libvirt-test-node-broken.xml")
    try:
        problems = passthrough.domain_problems(EXPECTED, passthrough.libvirt_domain_xmls(conn))
    finally:
        conn.close()
    assert "domain hpcv-hpc-cluster-compute-02 has no <hostdev> for 0000:07:00.1" in problems
    assert ("0000:07:00.0 is given to 2 domains: hpcv-hpc-cluster-compute-01, hpcv-hpc-cluster-compute-02"
            in problems)
    assert passthrough.domain_problems({"hpcv-x-c1": ["0000:01:00.0"]}, {}) == ["domain hpcv-x-c1 is not defined"]


def test_hostdevs_are_left_out_with_the_reason_where_there_is_no_iommu():
    addrs, why = passthrough.planned_hostdevs([GPU, AUDIO], PCIE / "iommu-off")
    assert addrs == [] and "0000:01:00.0, 0000:01:00.1 left out: IOMMU is off" in why
    assert passthrough.planned_hostdevs([GPU, AUDIO], PCIE / "passthrough-ready") == (
        ["0000:01:00.0", "0000:01:00.1"], None)
    assert passthrough.planned_hostdevs([], PCIE / "iommu-off") == ([], None)


# -- the shipped suite, through the plugin, against the fixtures --------------------------------

SUITE = Path(__file__).resolve().parents[2] / "suites" / "l1_pcie" / "test_host_passthrough.py"


def _suite_config(tmp_path: Path, test_driver: str) -> Path:
    import yaml

    def node(name, addr, devs, group):
        return {"names": name, "addresses": [addr], "pcie_passthrough": [
            {"pci_address": a, "device_type": t, "vendor_id": "10de", "device_id": d, "iommu_group": group}
            for a, t, d in devs]}

    doc = {
        "name": "hpc-cluster", "provider": "libvirt",
        "network": {"subnet": "10.234.9.0/24", "bridge": "hpcv-pcie"},
        "compute": [node("compute-01", "10.234.9.11", [("0000:01:00.0", "gpu", "2805"), ("0000:01:00.1", "audio", "22bd")], 1),
                    node("compute-02", "10.234.9.12", [("0000:07:00.0", "gpu", "2504"), ("0000:07:00.1", "audio", "228e")], 2)],
        "libvirt": {"uri": f"test://{PCIE / test_driver}"},
    }
    path = tmp_path / "pcie.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _run_suite(pytester, monkeypatch, tree: str, test_driver: str = "libvirt-test-node.xml"):
    pytest.importorskip("libvirt", reason="libvirt-python is not installed (setup.sh installs it)")
    monkeypatch.setenv("HPCV_SYSFS_ROOT", str(PCIE / tree))
    config = _suite_config(pytester.path, test_driver)
    return pytester.runpytest_inprocess(str(SUITE), "--hpc-config", str(config), "-p", "no:randomly",
                                        "--hpc-report-dir", str(pytester.path / "reports"), "-rA")


def _failed_ids(result) -> list[str]:
    """The failed tests' names (from the in-process reports, not the terminal summary, whose
    lines carry a message or not depending on the terminal's width)."""
    return sorted(rep.nodeid.rsplit("::", 1)[-1] for rep in result.reprec.getfailures() if rep.when == "call")


def test_suite_passes_on_a_ready_host(pytester, monkeypatch):
    result = _run_suite(pytester, monkeypatch, "passthrough-ready")
    result.assert_outcomes(passed=4)


@pytest.mark.parametrize("tree, failing, message", [
    ("iommu-off", "test_iommu_is_enabled", "libvirt host: IOMMU is off"),
    ("gpu-on-host-driver", "test_devices_ready_for_passthrough[compute-01]",
     "compute-01: 0000:01:00.0 is bound to nvidia, must be vfio-pci"),
    ("group-member-unbound", "test_devices_ready_for_passthrough[compute-01]",
     "member 0000:01:00.1 [10de:22bd, class 040300, driver snd_hda_intel] is not bound to vfio-pci"),
    ("group-shares-host-nic", "test_devices_ready_for_passthrough[compute-01]", "a host network controller"),
])
def test_suite_names_node_and_fault_on_broken_hosts(pytester, monkeypatch, tree, failing, message):
    result = _run_suite(pytester, monkeypatch, tree)
    out = result.stdout.str()
    assert failing in _failed_ids(result), out[-3000:]
    assert message in out, out[-3000:]


def test_suite_catches_a_domain_without_its_hostdev(pytester, monkeypatch):
    result = _run_suite(pytester, monkeypatch, "passthrough-ready", "libvirt-test-node-broken.xml")
    out = result.stdout.str()
    assert _failed_ids(result) == ["test_each_domain_holds_its_devices"], out[-3000:]
    assert "hpcv-hpc-cluster-compute-02 has no <hostdev> for 0000:07:00.1" in out


def test_suite_is_not_applicable_without_passthrough_devices(pytester, monkeypatch, tmp_path):
    import yaml

    path = pytester.path / "plain.yaml"
    path.write_text(yaml.safe_dump({"name": "plain", "provider": "libvirt",
                                    "network": {"subnet": "10.234.9.0/24", "bridge": "hpcv-plain"},
                                    "compute": [{"names": "c1"}]}))
    result = pytester.runpytest_inprocess(str(SUITE), "--hpc-config", str(path), "-p", "no:randomly",
                                          "--hpc-report-dir", str(pytester.path / "reports"), "-rs")
    result.assert_outcomes(skipped=3)
    assert "the config declares no PCIe passthrough devices" in result.stdout.str()
