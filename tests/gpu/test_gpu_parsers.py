"""GPU probe parsers against the outputs recorded on a real H100 node (fixtures/gpu/h100/)."""

from __future__ import annotations

import dataclasses

import pytest
from degrade import BUS, H100, NODE, nvml_text, smi_text, sysfs_text

from pytest_hpcvalidate.probes import gpu
from pytest_hpcvalidate.probes.gpu import NOT_SUPPORTED, PcieLink, Unavailable

#: fields the recorder of nvml.json did not read (minor, P-state), read with a wrong pynvml
#: name (power limit), or that are instantaneous (power): not comparable between the two files
NOT_COMPARABLE = {"minor", "pstate", "power_w", "power_limit_w"}


@pytest.fixture(scope="module")
def from_nvml() -> gpu.NodeGpuFacts:
    return gpu.parse_nvml_json(NODE, (H100 / "nvml.json").read_text())


@pytest.fixture(scope="module")
def from_smi() -> gpu.NodeGpuFacts:
    return gpu.parse_nvidia_smi_xml(NODE, (H100 / "nvidia-smi-q.xml").read_text())


def test_nvml_json_of_the_h100(from_nvml):
    assert from_nvml.source == "nvml" and from_nvml.driver_version == "580.159.04"
    assert from_nvml.cuda_driver_version == "13.0"
    (g,) = from_nvml.gpus
    assert (g.name, g.bus_id, g.address, g.pci_device_id) == ("NVIDIA H100 80GB HBM3", BUS, "0000:00:06.0", "2330")
    assert g.uuid == "GPU-9004449a-f6a3-e8c3-aa77-3a1e11561816" and g.memory_total_mib == 81559
    assert (g.ecc_enabled, g.ecc_pending, g.ecc_uncorrected_volatile) == (True, True, 0)
    assert g.pcie == PcieLink(5, 16, 5, 16)
    assert (g.persistence, g.compute_mode, g.mig_enabled) == (True, "Default", False)
    assert (g.remapped_rows_pending, g.remapped_rows_failed) == (False, False)
    assert g.throttle_reasons == frozenset({"gpu_idle"}) and g.temperature_c == 35
    # Hopper has no page retirement; the recorder's power-limit call did not exist: not errors
    assert g.retired_pages_pending is NOT_SUPPORTED or g.retired_pages_pending == NOT_SUPPORTED
    assert g.power_limit_w == NOT_SUPPORTED and str(g.power_limit_w) == "not supported"


def test_nvml_json_and_nvidia_smi_xml_give_the_same_facts(from_nvml, from_smi):
    assert (from_smi.source, from_smi.driver_version, from_smi.cuda_driver_version) == \
        ("nvidia-smi", from_nvml.driver_version, from_nvml.cuda_driver_version)
    assert len(from_smi.gpus) == len(from_nvml.gpus) == 1
    a, b = from_nvml.gpus[0], from_smi.gpus[0]
    compared = [f.name for f in dataclasses.fields(gpu.GpuFacts) if f.name not in NOT_COMPARABLE]
    assert len(compared) >= 18
    assert {f: getattr(a, f) for f in compared} == {f: getattr(b, f) for f in compared}
    assert (b.minor, b.pstate, b.power_limit_w) == (0, 0, 700.0)


def test_sysfs_listing_of_the_h100_node():
    functions = gpu.parse_sysfs_pci((H100 / "sysfs-pci.txt").read_text())
    assert len(functions) == 7  # the /dev and /proc output after the last block is no device
    (nv,) = [f for f in functions if f.vendor == "10de"]
    assert (nv.address, nv.device, nv.pci_class, nv.driver, nv.is_display) == \
        ("0000:00:06.0", "2330", 0x030200, "nvidia", True)
    assert nv.link == PcieLink(5, 16, 5, 16)
    virtio = next(f for f in functions if f.address == "0000:00:03.0")
    assert (virtio.vendor, virtio.driver, virtio.is_display, virtio.link.gen) == ("1af4", "virtio-pci", False,
                                                                                  NOT_SUPPORTED)


@pytest.mark.parametrize("speed, gen", [("2.5 GT/s PCIe", 1), ("8.0 GT/s PCIe", 3), ("16.0 GT/s PCIe", 4),
                                        ("32.0 GT/s PCIe", 5), ("64.0 GT/s PCIe", 6), ("Unknown", NOT_SUPPORTED)])
def test_link_speed_to_generation(speed, gen):
    assert gpu.link_gen(speed) == gen


def test_nvml_errors_other_than_unsupported_are_kept_as_errors():
    facts = gpu.parse_nvml_json(NODE, nvml_text({"remapped_rows": "ERR NVMLError_GpuIsLost: GPU is lost",
                                                 "persistence": "ERR NVMLError_NotSupported: Not Supported"}))
    g = facts.gpus[0]
    assert g.remapped_rows_pending == Unavailable("error: NVMLError_GpuIsLost: GPU is lost")
    assert g.persistence == NOT_SUPPORTED


def test_smi_bracketed_values_are_errors_and_na_is_unsupported():
    facts = gpu.parse_nvidia_smi_xml(NODE, smi_text({"temperature/gpu_temp": "[Unknown Error]",
                                                     "persistence_mode": "N/A"}))
    assert facts.gpus[0].temperature_c == Unavailable("error: Unknown Error")
    assert facts.gpus[0].persistence == NOT_SUPPORTED


def test_output_with_nvml_json_wins_over_xml():
    json_line = nvml_text()
    facts = gpu.parse_facts(NODE, json_line + "\n" + (H100 / "nvidia-smi-q.xml").read_text())
    assert facts.source == "nvml" and facts.error == ""


def test_xml_fallback_keeps_why_nvml_did_not_answer():
    out = '{"start": 1.0, "cuda_visible_devices": "0", "error": "ERR ModuleNotFoundError: No module named \'pynvml\'"}\n'
    facts = gpu.parse_facts(NODE, out + (H100 / "nvidia-smi-q.xml").read_text())
    assert facts.source == "nvidia-smi" and len(facts.gpus) == 1
    assert "No module named 'pynvml'" in facts.error and facts.cuda_visible_devices == ("0",)


def test_neither_source_gives_both_reasons():
    out = '{"start": 1.0, "error": "ERR NVMLError_LibraryNotFound: NVML Shared Library Not Found"}\n'
    facts = gpu.parse_facts(NODE, out + "No devices were found\n")
    assert not facts.available and facts.gpus == ()
    assert "NVML Shared Library Not Found" in facts.error and "No devices were found" in facts.error


def test_an_unreadable_xml_is_no_source():
    facts = gpu.parse_facts(NODE, "<?xml version='1.0'?><nvidia_smi_log><gpu>")
    assert not facts.available and "no readable XML" in facts.error


def test_older_xml_tag_names():
    """Drivers before 530 name clock reasons ``clocks_throttle_reason_*`` under
    ``clocks_throttle_reasons``: the same facts come out."""
    text = smi_text({"clocks_event_reasons/clocks_event_reason_hw_slowdown": "Active"})
    old = text.replace("clocks_event_reason", "clocks_throttle_reason")
    for t in (text, old):
        assert gpu.parse_nvidia_smi_xml(NODE, t).gpus[0].throttle_reasons == {"gpu_idle", "hw_slowdown"}


def test_sysfs_variants_parse():
    assert [f.driver for f in gpu.parse_sysfs_pci(sysfs_text({"driver=nvidia": "driver="})) if f.vendor == "10de"] == [""]
    assert not [f for f in gpu.parse_sysfs_pci(sysfs_text(drop_gpu=True)) if f.vendor == "10de"]


def test_device_numbers():
    text = "/dev/nvidia0 c3 0\n/dev/nvidia1 c3 1\n/dev/nvidia7 -\n/dev/zero 1 5\n"
    assert gpu.parse_device_numbers(text) == {"/dev/nvidia0": (195, 0), "/dev/nvidia1": (195, 1),
                                              "/dev/nvidia7": None, "/dev/zero": (1, 5)}
