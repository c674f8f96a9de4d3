"""The GPU model table (config/gpu_models.py) against itself and the recorded H100."""

from __future__ import annotations

import pytest
from degrade import H100, NODE

from pytest_hpcvalidate.config import gpu_models
from pytest_hpcvalidate.probes import gpu, gpu_health


def test_names_and_device_ids_are_unique():
    names = [gpu_models._key(m.name) for m in gpu_models.MODELS]
    ids = [d for m in gpu_models.MODELS for d in m.device_ids]
    assert len(names) == len(set(names)) and len(ids) == len(set(ids))
    assert all(len(d) == 4 and int(d, 16) >= 0 and d == d.lower() for d in ids)


@pytest.mark.parametrize("model", gpu_models.MODELS, ids=lambda m: m.name)
def test_every_row_is_usable(model):
    assert model.pcie_gen in range(1, 7) and model.pcie_width in (1, 2, 4, 8, 16, 32)
    assert gpu_health.version_tuple(model.min_driver)
    peaks = [v for v in (model.bf16_tflops, model.fp16_tflops, model.fp32_tflops) if v]
    assert all(v > 0 for v in peaks) and (model.memory_bandwidth_gbps or 0) >= 0
    assert gpu_models.by_name(model.name.upper()) is model
    assert all(gpu_models.by_device_id("0x" + d.upper()) is model for d in model.device_ids)


def test_the_recorded_h100_matches_its_row():
    (g,) = gpu.parse_nvml_json(NODE, (H100 / "nvml.json").read_text()).gpus
    row = gpu_models.by_device_id(g.pci_device_id)
    assert row is gpu_models.by_name(g.name) and row.name == g.name
    assert (g.pcie.max_gen, g.pcie.max_width) == (row.pcie_gen, row.pcie_width)
    assert row.memory_gb * gpu_health.MEMORY_TOLERANCE < g.memory_total_mib * 2**20 / 1e9 < row.memory_gb * 1.1


def test_unknown_models_have_no_row():
    assert gpu_models.by_name("NVIDIA Future GPU") is None and gpu_models.by_name(None) is None
    assert gpu_models.by_device_id("ffff") is None and gpu_models.by_device_id("") is None


@pytest.mark.parametrize("name, gres", [("NVIDIA H200", "h200"), ("NVIDIA H100 80GB HBM3", "h100"),
                                        ("Tesla V100-SXM2-32GB", "v100"), ("NVIDIA GeForce RTX 4090", "rtx")])
def test_gres_type_from_a_product_name(name, gres):
    assert gpu_models.gres_type(name) == gres


def test_every_rows_gres_type_is_a_valid_config_value():
    from pytest_hpcvalidate.config.model import Gpus

    for m in gpu_models.MODELS:
        assert Gpus(count=1, type=gpu_models.gres_type(m.name)).type == gpu_models.gres_type(m.name)
