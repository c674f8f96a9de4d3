"""The GPU checks' judgement (probes/gpu_health.py, what the suites assert) on the recorded
H100 and on degraded copies of it: healthy passes, and each fault fails with a message naming
the node, the GPU's bus id, what was expected and what was found, through both parsers."""

from __future__ import annotations

import pytest
from degrade import BUS, NODE, nvml_text, smi_text, sysfs_text
from hypothesis import given
from hypothesis import strategies as st

from pytest_hpcvalidate.config.model import ClusterConfig
from pytest_hpcvalidate.probes import gpu, gpu_health
from pytest_hpcvalidate.probes.gpu_health import HEALTH_CHECKS

H100_NAME = "NVIDIA H100 80GB HBM3"


def expectation(**gpus) -> gpu_health.GpuExpectation:
    """The expectation of node ``vm`` as a config declaring its H100 gives it (plus ``gpus``)."""
    cfg = ClusterConfig.model_validate({
        "name": "t", "network": {"subnet": "10.9.0.0/24", "bridge": "t0"},
        "compute": [{"names": NODE, "gpus": {"count": 1, "type": "h100", "model": H100_NAME,
                                             "simulated": False, **gpus}}],
        "slurm": {"gres_types": ["gpu"]},
    })
    node = next(n for n in cfg.resolved_nodes() if n.name == NODE)
    return gpu_health.expectation_for(node)


def facts(source: str, gpu_changes: dict | None = None, xml_changes: dict | None = None, **kw) -> gpu.NodeGpuFacts:
    if source == "nvml":
        return gpu.parse_nvml_json(NODE, nvml_text(gpu_changes, kw.get("top"), kw.get("drop", False)))
    return gpu.parse_nvidia_smi_xml(NODE, smi_text(xml_changes, kw.get("xml_top"), kw.get("drop", False)))


SOURCES = ["nvml", "nvidia-smi"]


def test_defaults_for_the_h100_come_from_the_model_table():
    exp = expectation()
    assert (exp.count, exp.model, exp.device_ids, exp.driver) == (1, H100_NAME, {"2330"}, "nvidia")
    assert (exp.min_driver, exp.ecc_required, exp.persistence, exp.memory_gb) == ("520.61.05", True, True, 80)
    assert exp.link_for(facts("nvml").gpus[0]) == (5, 16)
    override = expectation(pcie_gen=4, pcie_width=8, min_driver_version="590.1", ecc_required=False)
    assert (override.pcie_gen, override.pcie_width, override.min_driver, override.ecc_required) == (4, 8, "590.1", False)


@pytest.mark.parametrize("source", SOURCES)
def test_the_recorded_h100_is_healthy(source):
    f = facts(source)
    problems = {name: check(expectation(), f) for name, check in HEALTH_CHECKS.items()}
    assert problems == {name: [] for name in HEALTH_CHECKS}


def test_the_recorded_pci_bus_is_healthy():
    from degrade import H100

    functions = gpu.parse_sysfs_pci((H100 / "sysfs-pci.txt").read_text())
    assert gpu_health.pci_problems(expectation(), functions) == []


#: fault -> (check, NVML JSON fields, nvidia-smi XML texts, what the message must say)
DEGRADED = {
    "link x8 Gen4": ("pcie_link", {"pcie_gen_cur": 4, "pcie_width_cur": 8},
                     {"pci/pci_gpu_link_info/pcie_gen/current_link_gen": "4",
                      "pci/pci_gpu_link_info/link_widths/current_link_width": "8x"},
                     ["runs at Gen4 x8", "expected Gen5 x16"]),
    "link x8 only": ("pcie_link", {"pcie_width_cur": 8}, {"pci/pci_gpu_link_info/link_widths/current_link_width": "8x"},
                     ["runs at Gen5 x8", "expected Gen5 x16"]),
    "slot limited to Gen4": ("pcie_link", {"pcie_gen_cur": 4, "pcie_gen_max": 4},
                             {"pci/pci_gpu_link_info/pcie_gen/current_link_gen": "4",
                              "pci/pci_gpu_link_info/pcie_gen/max_link_gen": "4"},
                             ["runs at Gen4 x16", "expected Gen5 x16", "maximum is Gen4 x16"]),
    "ECC off": ("ecc", {"ecc_mode": [0, 0]}, {"ecc_mode/current_ecc": "Disabled", "ecc_mode/pending_ecc": "Disabled"},
                ["ECC is Disabled, expected Enabled"]),
    "ECC off after reset": ("ecc", {"ecc_mode": [1, 0]}, {"ecc_mode/pending_ecc": "Disabled"},
                            ["ECC becomes Disabled at the next reset, expected Enabled"]),
    "uncorrected ECC errors": ("ecc", {"ecc_uncorrected_volatile": 3}, {"ecc_errors/volatile/dram_uncorrectable": "3"},
                               ["3 uncorrected volatile ECC errors, expected at most 0"]),
    "pending row remap": ("memory_repair", {"remapped_rows": [0, 1, 1, 0]},
                          {"remapped_rows/remapped_row_pending": "Yes"}, ["row remapping pending", "expected none"]),
    "failed row remap": ("memory_repair", {"remapped_rows": [0, 0, 0, 1]},
                         {"remapped_rows/remapped_row_failure": "Yes"}, ["row remapping failed", "expected no failure"]),
    "pending page retirement": ("memory_repair", {"retired_pages_pending": 1},
                                {"retired_pages/pending_retirement": "Yes"}, ["retired pages pending", "expected none"]),
    "old driver": ("driver", {}, {}, ["NVIDIA driver 470.82.01, expected >= 520.61.05"]),
    "persistence off": ("persistence", {"persistence": 0}, {"persistence_mode": "Disabled"},
                        ["persistence mode Disabled, expected Enabled"]),
    "thermal slowdown": ("slowdown", {"clocks_throttle_reasons": 0x41},
                         {"clocks_event_reasons/clocks_event_reason_hw_thermal_slowdown": "Active"},
                         ["slowed down by hw_thermal_slowdown", "expected none"]),
    "wrong model": ("count_and_model", {"name": "NVIDIA A100-SXM4-80GB"}, {"product_name": "NVIDIA A100-SXM4-80GB"},
                    ["model 'NVIDIA A100-SXM4-80GB', the config says 'NVIDIA H100 80GB HBM3'"]),
    "40 GB where 80 are due": ("count_and_model", {"mem_total": 40 * 2**30}, {"fb_memory_usage/total": "40960 MiB"},
                               ["42.9 GB of memory, expected 80 GB"]),
}


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("fault", list(DEGRADED))
def test_each_degraded_copy_fails_its_check_naming_node_gpu_expected_found(fault, source):
    check, json_changes, xml_changes, says = DEGRADED[fault]
    old_driver = fault == "old driver"
    f = facts(source, json_changes, xml_changes, top={"driver": "470.82.01"} if old_driver else None,
              xml_top={"driver_version": "470.82.01"} if old_driver else None)
    problems = HEALTH_CHECKS[check](expectation(), f)
    assert len(problems) == 1, problems
    assert NODE in problems[0] and BUS in problems[0]
    for fragment in says:
        assert fragment in problems[0]
    others = {name: c(expectation(), f) for name, c in HEALTH_CHECKS.items() if name != check}
    assert others == {name: [] for name in others}, "a fault must fail only its own check"


@pytest.mark.parametrize("source", SOURCES)
def test_a_missing_gpu_fails_the_count(source):
    (problem,) = gpu_health.count_and_model_problems(expectation(), facts(source, drop=True))
    assert problem == f"{NODE}: {source} sees 0 GPUs, the config says 1 (found: none)"


def test_a_gpu_too_few_names_the_ones_found():
    exp = expectation(count=2)
    (problem,) = gpu_health.count_and_model_problems(exp, facts("nvml"))
    assert problem == f"{NODE}: nvml sees 1 GPUs, the config says 2 (found: {H100_NAME} at {BUS})"


@pytest.mark.parametrize("pstate, gen, width, ok", [
    ("P8", "1", "16x", True),    # an idle GPU lowers its link speed: judged by the maximum
    ("P8", "1", "8x", False),    # ... but not its width
    ("P0", "1", "16x", False),   # a busy GPU at Gen1 is downtrained
])
def test_idle_gpus_are_judged_by_their_links_maximum_generation(pstate, gen, width, ok):
    f = facts("nvidia-smi", xml_changes={"performance_state": pstate,
                                         "pci/pci_gpu_link_info/pcie_gen/current_link_gen": gen,
                                         "pci/pci_gpu_link_info/link_widths/current_link_width": width})
    problems = gpu_health.pcie_link_problems(expectation(), f)
    assert (problems == []) is ok, problems
    if not ok:
        assert BUS in problems[0] and f"Gen{gen} x{width[:-1]}" in problems[0]


def test_without_a_known_model_the_link_must_run_at_its_maximum():
    exp = gpu_health.GpuExpectation(node=NODE, count=1)
    assert gpu_health.pcie_link_problems(exp, facts("nvml", {"name": "Some Future GPU"})) == []
    (problem,) = gpu_health.pcie_link_problems(exp, facts("nvml", {"name": "Some Future GPU", "pcie_width_cur": 4}))
    assert "runs at Gen5 x4, expected Gen5 x16" in problem


@pytest.mark.parametrize("change, says", [
    ({"driver=nvidia": "driver=vfio-pci"}, "0000:00:06.0: bound to driver vfio-pci, expected nvidia"),
    ({"driver=nvidia": "driver="}, "0000:00:06.0: bound to driver none, expected nvidia"),
    ({"device=0x2330": "device=0x20b2"}, "0000:00:06.0: PCI ID 10de:20b2, expected 10de:2330 (NVIDIA H100 80GB HBM3)"),
])
def test_pci_bus_faults(change, says):
    (problem,) = gpu_health.pci_problems(expectation(), gpu.parse_sysfs_pci(sysfs_text(change)))
    assert problem == f"{NODE} {says}"


def test_a_gpu_gone_from_the_pci_bus():
    (problem,) = gpu_health.pci_problems(expectation(), gpu.parse_sysfs_pci(sysfs_text(drop_gpu=True)))
    assert problem == f"{NODE}: 0 NVIDIA GPUs on the PCI bus, the config says 1 (found: none)"


# ----------------------------------------------------------------------------- driver versions
versions = st.lists(st.integers(0, 999), min_size=1, max_size=4)


def _text(parts: list[int]) -> str:
    return ".".join(f"{p:02d}" if i else str(p) for i, p in enumerate(parts))


@given(versions, versions)
def test_driver_comparison_is_numeric_per_part(a, b):
    """580.159.04 vs 580.65.06: numbers, not strings; missing trailing parts are zeros."""
    pad = max(len(a), len(b))
    expected = a + [0] * (pad - len(a)) >= b + [0] * (pad - len(b))
    assert gpu_health.version_at_least(_text(a), _text(b)) is expected


@given(versions)
def test_a_driver_is_at_least_itself(a):
    assert gpu_health.version_at_least(_text(a), _text(a))
    assert gpu_health.version_tuple(_text(a)) == tuple(a)


def test_version_suffixes_end_the_number():
    assert gpu_health.version_tuple("535.54.03-beta") == (535, 54, 3)
    assert gpu_health.version_at_least("580.159.04", "580.65.06")
    assert not gpu_health.version_at_least("580.65.06", "580.159.04")
