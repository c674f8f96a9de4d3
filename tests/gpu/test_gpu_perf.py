"""Layer 4's judgement (probes/gpu_perf.py): the numbers recorded with torch on the real H100
meet the thresholds the model table and config give; a cold or starved GPU does not; the
measurement script itself reports why when torch is missing."""

from __future__ import annotations

import os
import re
import sys

import pytest
from degrade import H100

from pytest_hpcvalidate.cluster import Node
from pytest_hpcvalidate.config import gpu_models
from pytest_hpcvalidate.config.model import Thresholds
from pytest_hpcvalidate.probes import gpu_perf
from pytest_hpcvalidate.probes.gpu_perf import TorchRank
from pytest_hpcvalidate.transport.local import LocalTransport

SPEC = gpu_models.by_name("NVIDIA H100 80GB HBM3")
LIMITS = Thresholds()


def recorded(pattern: str, name: str = "torch-smoke.txt") -> float:
    return float(re.search(pattern, (H100 / name).read_text()).group(1))


#: what torch measured on the H100 (fixtures/gpu/h100/torch-smoke.txt), as one task reports it
WARM = TorchRank(rank=0, world=1, host="vm", cuda_available=True, device_count=1, device_name=SPEC.name,
                 pci_address="0000:00:06.0", matmul_tflops={"bf16": recorded(r"bf16 matmul TFLOP/s ([\d.]+)")},
                 h2d_gbps=recorded(r"H2D GB/s ([\d.]+)"), d2h_gbps=recorded(r"D2H GB/s ([\d.]+)"))


@pytest.mark.parametrize("gen, width, rate", [(5, 16, 63.0), (4, 16, 31.5), (4, 8, 15.8), (3, 16, 15.8), (1, 1, 0.25)])
def test_link_rates(gen, width, rate):
    assert gpu_perf.link_rate_gbps(gen, width) == pytest.approx(rate, rel=0.01)


def test_the_recorded_h100_numbers_pass():
    metrics = (gpu_perf.matmul_metrics(WARM, SPEC, LIMITS.gpu_matmul_peak_fraction_min)
               + gpu_perf.copy_metrics(WARM, (5, 16), LIMITS.gpu_host_copy_link_fraction_min))
    assert [m.name for m in metrics] == ["gpu_matmul_bf16_tflops", "gpu_h2d_gbps", "gpu_d2h_gbps"]
    assert all(m.passed for m in metrics), [m.message for m in metrics]
    assert metrics[0].threshold == pytest.approx(494.5) and metrics[1].threshold == pytest.approx(31.51, abs=0.01)


def test_a_matmul_without_warm_up_misses_the_threshold():
    """The real cold number (slurm-on-gpu-node.txt: 173 TFLOP/s through srun, no warm-up)."""
    cold = TorchRank(rank=0, world=1, host="vm", pci_address="0000:00:06.0",
                     matmul_tflops={"bf16": recorded(r"TFLOPs ([\d.]+)", "slurm-on-gpu-node.txt")})
    (m,) = gpu_perf.matmul_metrics(cold, SPEC, LIMITS.gpu_matmul_peak_fraction_min)
    assert not m.passed
    assert m.message == "gpu_matmul_bf16_tflops on vm rank 0 (0000:00:06.0) = 173.33 TFLOP/s, below the minimum 494.5 TFLOP/s"


def test_copies_on_a_gen5_gpu_trained_at_x4_miss_the_link_threshold():
    starved = TorchRank(rank=0, world=1, host="vm", h2d_gbps=WARM.h2d_gbps / 4, d2h_gbps=WARM.d2h_gbps / 4)
    metrics = gpu_perf.copy_metrics(starved, (5, 16), LIMITS.gpu_host_copy_link_fraction_min)
    assert [m.passed for m in metrics] == [False, False]
    assert metrics[0].message == "gpu_h2d_gbps on vm rank 0 = 12.86 GB/s, below the minimum 31.51 GB/s"


def test_memory_bandwidth_and_training_and_unknown_models():
    r = TorchRank(rank=0, world=1, host="vm", membw_gbps=1000.0, train={"loss_first": 0.5, "loss_last": 0.4})
    (bw,) = gpu_perf.membw_metrics(r, SPEC, LIMITS.gpu_memory_bw_peak_fraction_min)
    assert not bw.passed and bw.threshold == 1675
    (loss,) = gpu_perf.train_metrics(r, LIMITS.gpu_train_loss_ratio_max)
    assert not loss.passed and "gpu_train_loss_ratio on vm rank 0 = 0.8 ratio, above the maximum 0.5" in loss.message
    assert all(m.threshold is None and m.passed for m in gpu_perf.membw_metrics(r, None, 0.5))


def test_allreduce_results():
    good = [TorchRank(rank=i, world=2, host="vm", allreduce={"world": 2, "seconds": 0.01, "busbw_gbps": 26.8,
                                                                "ok": True, "sum": 3.0, "expected": 3.0}) for i in (0, 1)]
    metrics, problems = gpu_perf.allreduce_metrics(good, 20.0, "vm")
    assert problems == [] and [(m.name, m.passed) for m in metrics] == [("gpu_allreduce_ms", True),
                                                                        ("gpu_allreduce_busbw_gbps", True)]
    bad = [good[0], TorchRank(rank=1, world=2, host="vm", allreduce={**good[1].allreduce, "ok": False, "sum": 2.0})]
    _, problems = gpu_perf.allreduce_metrics(bad, 20.0, "vm")
    assert problems == ["vm rank 1: all-reduce sum 2.0, expected 3.0"]
    _, problems = gpu_perf.allreduce_metrics(good[:1] + [TorchRank(rank=1, world=2, host="vm")], None, "vm")
    assert problems == ["no all-reduce result from vm rank 1"]


def test_rank_problems():
    assert gpu_perf.rank_problems([WARM], 1, SPEC.name) == []
    assert gpu_perf.rank_problems([WARM], 2, SPEC.name) == ["1 of 2 tasks reported"]
    other = TorchRank(rank=0, world=1, host="vm", device_name="NVIDIA L4", errors={"membw": "OutOfMemoryError: x"})
    assert gpu_perf.rank_problems([other], 1, SPEC.name) == [
        "vm rank 0: torch runs on 'NVIDIA L4', expected 'NVIDIA H100 80GB HBM3'", "vm rank 0: membw failed: OutOfMemoryError: x"]


def test_the_script_reports_a_missing_torch(tmp_path, monkeypatch):
    """The shipped script, run as the suite runs it (heredoc through sh), on a python without torch."""
    (tmp_path / "python3").write_text(f'#!/bin/sh\nexec {sys.executable} -I -S "$@"\n')
    (tmp_path / "python3").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    node = Node("vm", "compute", "127.0.0.1", LocalTransport("vm"))
    result = node.run(gpu_perf.torch_command(["smoke", "matmul"], master="10.0.0.1", port=29999), timeout=30)
    (rank,) = gpu_perf.parse_torch(result.stdout)
    assert result.exit_code == 3 and (rank.rank, rank.world) == (0, 1)
    assert rank.error.startswith("import torch: ModuleNotFoundError")
    assert gpu_perf.rank_problems([rank], 1, SPEC.name) == [f"vm rank 0: {rank.error}"]
