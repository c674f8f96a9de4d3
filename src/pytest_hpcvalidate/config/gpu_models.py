"""What a healthy GPU of a known model looks like: the defaults behind the GPU checks.

A config names the model NVML must report (``gpus.model``); the row for that name gives what
the checks expect unless the config overrides it (``gpus.pcie_gen``, ``gpus.min_driver_version``
...). Rows are keyed by the product name NVML (and ``nvidia-smi``) reports.

Sources, per column:

- ``name`` and ``device_ids``: NVIDIA's own table "Compatible GPUs" (product name and PCI
  device ID) in the README of github.com/NVIDIA/open-gpu-kernel-modules, release 595.45.04;
  Volta rows (not in that table: the open modules start at Turing) from the PCI ID repository
  pci.ids (Debian package ``pci.ids`` 0.0~2023.04.11). The recorded H100 in
  ``fixtures/gpu/h100/`` reports "NVIDIA H100 80GB HBM3" with device 0x2330, as the table says.
- ``pcie_gen``/``pcie_width``, ``memory_gb``, peak TFLOP/s and memory bandwidth: NVIDIA's
  product datasheets (H100 "Tensor Core GPU" datasheet for SXM5/PCIe/NVL, H200 datasheet,
  A100 80GB/40GB datasheets, A30, A40, A10, L40S, L40, L4 datasheets, V100 datasheet, and the
  Ada Lovelace architecture whitepaper for the GeForce RTX 4090/4060 Ti). Tensor TFLOP/s are
  the *dense* figures (the datasheets' headline numbers assume 2:4 sparsity and are twice
  these); fp32 is the non-tensor FP32 rate, which is what ``torch.matmul`` on float32 uses
  with PyTorch's default (TF32 off). GeForce rates are with FP32 accumulate.
- ``min_driver``: the minimum driver of the first CUDA release that supports the model's
  compute capability (CUDA Toolkit release notes, table "CUDA Toolkit and Corresponding
  Driver Versions"): sm_70 CUDA 9.0 → 384.81, sm_80 CUDA 11.0 → 450.36.06, sm_86 CUDA 11.1 →
  455.23, sm_89/sm_90 CUDA 11.8 → 520.61.05. A floor, not a recommendation: sites set their
  own ``gpus.min_driver_version``.
- ``ecc_default``: True for HBM models, whose ECC NVIDIA ships enabled; None (not checked
  unless the config says) for GDDR models, where ECC is an operator's choice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: NVIDIA's PCI vendor ID
NVIDIA_VENDOR = "10de"


@dataclass(frozen=True)
class GpuModel:
    name: str                          # as NVML reports it
    device_ids: tuple[str, ...]        # PCI device IDs, 4 lower-case hex digits
    pcie_gen: int
    pcie_width: int
    memory_gb: float | None            # nominal, 10^9 bytes, as the datasheet states it
    ecc_default: bool | None
    min_driver: str
    bf16_tflops: float | None = None   # dense peak
    fp16_tflops: float | None = None   # dense peak
    fp32_tflops: float | None = None
    memory_bandwidth_gbps: float | None = None  # GB/s (10^9 bytes per second)


_HOPPER = "520.61.05"
_AMPERE_GA100 = "450.36.06"
_AMPERE_GA10X = "455.23"
_ADA = "520.61.05"
_VOLTA = "384.81"

MODELS: tuple[GpuModel, ...] = (
    # Hopper
    GpuModel("NVIDIA H100 80GB HBM3", ("2330",), 5, 16, 80, True, _HOPPER, 989, 989, 67, 3350),  # H100 SXM5
    GpuModel("NVIDIA H100 PCIe", ("2331",), 5, 16, 80, True, _HOPPER, 756, 756, 51, 2000),
    GpuModel("NVIDIA H100 NVL", ("2321",), 5, 16, 94, True, _HOPPER, 835, 835, 60, 3900),
    GpuModel("NVIDIA H200", ("2335",), 5, 16, 141, True, _HOPPER, 989, 989, 67, 4800),  # H200 SXM
    # Ampere
    GpuModel("NVIDIA A100-SXM4-80GB", ("20b2",), 4, 16, 80, True, _AMPERE_GA100, 312, 312, 19.5, 2039),
    GpuModel("NVIDIA A100-SXM4-40GB", ("20b0",), 4, 16, 40, True, _AMPERE_GA100, 312, 312, 19.5, 1555),
    GpuModel("NVIDIA A100 80GB PCIe", ("20b5",), 4, 16, 80, True, _AMPERE_GA100, 312, 312, 19.5, 1935),
    GpuModel("NVIDIA A100-PCIE-40GB", ("20f1", "20b1"), 4, 16, 40, True, _AMPERE_GA100, 312, 312, 19.5, 1555),
    GpuModel("NVIDIA A30", ("20b7",), 4, 16, 24, True, _AMPERE_GA100, 165, 165, 10.3, 933),
    GpuModel("NVIDIA A40", ("2235",), 4, 16, 48, None, _AMPERE_GA10X, 149.7, 149.7, 37.4, 696),
    GpuModel("NVIDIA A10", ("2236",), 4, 16, 24, None, _AMPERE_GA10X, 125, 125, 31.2, 600),
    # Ada Lovelace
    GpuModel("NVIDIA L40S", ("26b9",), 4, 16, 48, None, _ADA, 362, 362, 91.6, 864),
    GpuModel("NVIDIA L40", ("26b5",), 4, 16, 48, None, _ADA, 181, 181, 90.5, 864),
    GpuModel("NVIDIA L4", ("27b8",), 4, 16, 24, None, _ADA, 121, 121, 30.3, 300),
    GpuModel("NVIDIA GeForce RTX 4090", ("2684",), 4, 16, 24, None, _ADA, 165, 165, 82.6, 1008),
    # the seed project's example config passes through a 10de:2805; the 4060 Ti has an x8 link
    GpuModel("NVIDIA GeForce RTX 4060 Ti", ("2803", "2805", "2788"), 4, 8, None, None, _ADA, None, None, 22.1, 288),
    # Volta
    GpuModel("Tesla V100-SXM2-32GB", ("1db5",), 3, 16, 32, True, _VOLTA, None, 125, 15.7, 900),
    GpuModel("Tesla V100-SXM2-16GB", ("1db1",), 3, 16, 16, True, _VOLTA, None, 125, 15.7, 900),
    GpuModel("Tesla V100-PCIE-32GB", ("1db6",), 3, 16, 32, True, _VOLTA, None, 112, 14, 900),
    GpuModel("Tesla V100-PCIE-16GB", ("1db4",), 3, 16, 16, True, _VOLTA, None, 112, 14, 900),
)


def _key(name: str) -> str:
    return " ".join(name.lower().split())


_BY_NAME = {_key(m.name): m for m in MODELS}
_BY_DEVICE = {dev: m for m in MODELS for dev in m.device_ids}


def by_name(name: str | None) -> GpuModel | None:
    """The row for a product name as NVML reports it (case and spacing ignored), or None."""
    return _BY_NAME.get(_key(name)) if name else None


def by_device_id(device_id: str | None) -> GpuModel | None:
    """The row for a PCI device ID (``2330``, ``0x2330``), or None."""
    if not device_id:
        return None
    return _BY_DEVICE.get(device_id.lower().removeprefix("0x").zfill(4))


def same_name(a: str, b: str) -> bool:
    """Whether two product names are the same model (case and spacing ignored)."""
    return _key(a) == _key(b)


def gres_type(name: str) -> str:
    """A GRES type for a product name: ``NVIDIA H200`` → ``h200``, ``NVIDIA H100 80GB HBM3`` →
    ``h100``, ``Tesla V100-SXM2-32GB`` → ``v100`` (the first word after the brand)."""
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w and w not in ("nvidia", "tesla", "geforce")]
    return (words[0] if words else "gpu")[:16]
