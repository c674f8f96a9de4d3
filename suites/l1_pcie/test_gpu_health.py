"""Layer 1, GPUs (the guest side of PCIe): on every node the config gives real GPUs, the GPUs
are on the PCI bus bound to the NVIDIA driver, NVML sees them as configured, their links run
at the expected generation and width, and nothing about their health asks for a reset.

Expectations come from the node's ``gpus`` section over the model table's defaults
(``config/gpu_models.py``); the judgement is :mod:`pytest_hpcvalidate.probes.gpu_health`.
Nodes with simulated GPUs are not applicable (their GRES and isolation are layer 3).
"""

from __future__ import annotations

import pytest

from pytest_hpcvalidate.probes import gpu, gpu_health
from pytest_hpcvalidate.capabilities import not_applicable

pytestmark = [pytest.mark.area("gpu"), pytest.mark.requires("nvml")]


@pytest.fixture(scope="module")
def pci_functions(cluster, real_gpu_nodes):
    """{node: [NVIDIA PCI functions]}, read from sysfs on every real-GPU node at once."""
    return gpu.gather_pci(cluster, real_gpu_nodes)


@pytest.fixture
def expectation(gpu_node, node_spec) -> gpu_health.GpuExpectation:
    spec = node_spec[gpu_node.name]
    if spec.gpu_simulated:
        not_applicable(f"{gpu_node.name}: its GPUs are simulated (no hardware): NVML and PCIe health do not apply")
    left_out = gpu_node.facts.get("passthrough_left_out")
    if left_out:  # the provider could not give the VM its devices (and said so when it booted it)
        pytest.skip(f"{gpu_node.name}: its GPUs were not passed through to the VM: {left_out}")
    return gpu_health.expectation_for(spec)


def _assert_healthy(check: str, expectation, gpu_facts, node) -> gpu.NodeGpuFacts:
    facts = gpu_facts[node.name]
    if not facts.available:
        pytest.skip(f"{node.name}: neither NVML nor nvidia-smi answered on the node ({facts.error})")
    problems = gpu_health.HEALTH_CHECKS[check](expectation, facts)
    assert not problems, "; ".join(problems)
    return facts


def test_gpus_on_pci_bus_bound_to_driver(gpu_node, expectation, pci_functions):
    problems = gpu_health.pci_problems(expectation, pci_functions[gpu_node.name])
    assert not problems, "; ".join(problems)


def test_nvml_sees_configured_gpus(gpu_node, expectation, gpu_facts):
    _assert_healthy("count_and_model", expectation, gpu_facts, gpu_node)


def test_pcie_link_at_expected_generation_and_width(gpu_node, expectation, gpu_facts):
    _assert_healthy("pcie_link", expectation, gpu_facts, gpu_node)


def test_driver_at_least_minimum(gpu_node, expectation, gpu_facts):
    _assert_healthy("driver", expectation, gpu_facts, gpu_node)


def test_ecc_as_required_without_uncorrected_errors(gpu_node, expectation, gpu_facts):
    _assert_healthy("ecc", expectation, gpu_facts, gpu_node)


def test_no_pending_page_retirement_or_row_remap(gpu_node, expectation, gpu_facts):
    _assert_healthy("memory_repair", expectation, gpu_facts, gpu_node)


def test_persistence_mode_as_configured(gpu_node, expectation, gpu_facts):
    _assert_healthy("persistence", expectation, gpu_facts, gpu_node)


def test_no_hardware_slowdown(gpu_node, expectation, gpu_facts, metric):
    facts = _assert_healthy("slowdown", expectation, gpu_facts, gpu_node)
    for g in facts.gpus:
        where = f"{gpu_node.name} GPU {g.index} ({g.bus_id})"
        if gpu.known(g.temperature_c):
            metric("gpu_temperature_c", g.temperature_c, "C", node=where)
        if gpu.known(g.power_w):
            metric("gpu_power_w", g.power_w, "W", node=where)
