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


def test_config_for_this_machine_expects_the_gpu_it_has(tmp_path, monkeypatch, capsys):
    """The lent machine may be an H100 or an H200: ``config`` rewrites configs/gpu-real.yaml's
    real-GPU groups for the GPU nvidia-smi names (model, GRES type, the Python running it) and
    leaves everything else alone; the result is a valid config."""
    import sys

    import yaml

    from pytest_hpcvalidate.config import load_config

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text('#!/bin/sh\n[ "$*" = "--query-gpu=name --format=csv,noheader -i 0" ] && echo "NVIDIA H200"\n')
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    src = BENCH.parents[1] / "configs" / "gpu-real.yaml"
    dst = tmp_path / "gpu-real.yaml"
    assert bench().for_this_machine(src, dst) == 0
    nodes = {n.name: n for n in load_config(str(dst)).resolved_nodes()}
    assert (nodes["gpu1"].gpu_model, nodes["gpu1"].gpu_type, nodes["gpu1"].gpu_python) == ("NVIDIA H200", "h200", sys.executable)
    assert nodes["cpu1"].gpus == 0
    before, after = yaml.safe_load(src.read_text()), yaml.safe_load(dst.read_text())
    assert {k: v for k, v in before.items() if k != "compute"} == {k: v for k, v in after.items() if k != "compute"}
    assert "gpu1: gpus.model 'NVIDIA H100 80GB HBM3' -> 'NVIDIA H200'" in capsys.readouterr().out


def test_config_without_a_gpu_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert bench().for_this_machine(BENCH.parents[1] / "configs" / "gpu-real.yaml", tmp_path / "x.yaml") == 1
    assert "nvidia-smi names no GPU 0 here" in capsys.readouterr().err
