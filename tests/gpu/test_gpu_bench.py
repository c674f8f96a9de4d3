"""bench/gpu_device_run.py, the one-shot judge of a recording from the GPU machine: it
passes the shared H100 recording and fails a degraded copy, so a fresh recording is judged by
exactly the suites' functions."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from degrade import H100, nvml_text

BENCH = Path(__file__).resolve().parents[2] / "bench" / "gpu_device_run.py"


def bench():
    spec = importlib.util.spec_from_file_location("gpu_device_run", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shared_h100_recording_passes(capsys):
    assert bench().evaluate(H100) == 0
    out = capsys.readouterr().out
    assert "NVML vs nvidia-smi, GPU 0: agree" in out and "L1 pcie_link: ok" in out and "0 problems" in out


def test_a_degraded_recording_fails(tmp_path, capsys):
    for name in ("nvidia-smi-q.xml", "sysfs-pci.txt"):
        shutil.copy(H100 / name, tmp_path / name)
    (tmp_path / "nvml.json").write_text(nvml_text({"pcie_width_cur": 8, "ecc_mode": [0, 0]}))
    assert bench().evaluate(tmp_path) == 1
    out = capsys.readouterr().out
    assert "GPU 0: NVML and nvidia-smi differ on ecc_enabled: (False, True)" in out
    assert "PCIe link runs at Gen5 x8, expected Gen5 x16" in out and "ECC is Disabled, expected Enabled" in out
