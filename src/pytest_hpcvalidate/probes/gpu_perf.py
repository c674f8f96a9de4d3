"""PyTorch CUDA through Slurm: run the shipped measurement script on GPU nodes, read what
each task reports, and turn it into metrics with thresholds.

The script is ``suites/l4_gpu/src/torch_check.py``; its output format is documented there.
It travels in the command (a heredoc), so nothing but the node's python3 with torch is
needed. Thresholds are fractions of the model's datasheet figures (``config/gpu_models.py``)
and of the PCIe link's rate, so one config serves every model. Each function returns
:class:`~pytest_hpcvalidate.report.metrics.Metric` verdicts; the suite records the same
numbers through the ``metric`` fixture (``record(metric, m)``).
"""

from __future__ import annotations

import json
import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..cluster import DEFAULT_FANOUT
from ..config.gpu_models import GpuModel
from ..report.metrics import Metric, evaluate
from ..transport import CommandResult
from .slurm import srun

SCRIPT = Path(__file__).resolve().parents[3] / "suites" / "l4_gpu" / "src" / "torch_check.py"

#: GT/s per lane and line-code efficiency per PCIe generation (PCI-SIG base specifications:
#: 8b/10b up to Gen2, 128b/130b for Gen3-5, FLIT mode for Gen6 counted as 242/256)
_LINK = {1: (2.5, 0.8), 2: (5.0, 0.8), 3: (8.0, 128 / 130), 4: (16.0, 128 / 130), 5: (32.0, 128 / 130),
         6: (64.0, 242 / 256)}


def link_rate_gbps(gen: int, width: int) -> float:
    """Payload rate of a PCIe link one way, GB/s: Gen5 x16 → 63.0."""
    gts, efficiency = _LINK[gen]
    return gts * efficiency * width / 8


def torch_command(tests: list[str], master: str | None = None, port: int | None = None,
                  extra_env: dict[str, str] | None = None, python: str = "python3") -> str:
    """Shell command (for ``srun ... /bin/sh -c``) running the script with ``tests`` under
    ``python`` (the node's Python with torch: the config's ``gpus.python``)."""
    env = {"HPCV_TORCH_TESTS": ",".join(tests), **(extra_env or {})}
    if master:
        env |= {"HPCV_MASTER": master, "HPCV_PORT": str(port or 29500)}
    assigns = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return f"{assigns} {shlex.quote(python)} - <<'HPCV_TORCH_EOF'\n{SCRIPT.read_text()}\nHPCV_TORCH_EOF"


@dataclass(frozen=True)
class TorchRank:
    """What one task of the script reported."""

    rank: int
    world: int
    host: str
    cuda_available: bool = False
    device_count: int = 0
    device_name: str = ""
    pci_address: str = ""
    matmul_tflops: dict[str, float] = field(default_factory=dict)
    h2d_gbps: float | None = None
    d2h_gbps: float | None = None
    membw_gbps: float | None = None
    train: dict[str, float] = field(default_factory=dict)
    allreduce: dict = field(default_factory=dict)
    error: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.host} rank {self.rank}" + (f" ({self.pci_address})" if self.pci_address else "")


def parse_torch(text: str) -> list[TorchRank]:
    """``HPCV_TORCH {json}`` lines (any order, other lines ignored) → ranks, sorted."""
    out = []
    for line in text.splitlines():
        _, sep, payload = line.partition("HPCV_TORCH ")
        if not sep:
            continue
        doc = json.loads(payload)
        known = {k: doc[k] for k in TorchRank.__dataclass_fields__ if k in doc}
        out.append(TorchRank(**known))
    return sorted(out, key=lambda r: r.rank)


def rank_problems(ranks: list[TorchRank], expected_ranks: int, model: str | None) -> list[str]:
    """Every task reported, reached CUDA on a GPU of the expected model, and no measurement failed."""
    out = []
    if len(ranks) != expected_ranks:
        out.append(f"{len(ranks)} of {expected_ranks} tasks reported")
    for r in ranks:
        if r.error:
            out.append(f"{r.where}: {r.error}")
            continue
        if model and r.device_name and " ".join(r.device_name.split()).lower() != " ".join(model.split()).lower():
            out.append(f"{r.where}: torch runs on {r.device_name!r}, expected {model!r}")
        out += [f"{r.where}: {name} failed: {why}" for name, why in sorted(r.errors.items())]
    return out


def _peak(spec: GpuModel | None, attr: str, fraction: float) -> float | None:
    value = getattr(spec, attr) if spec else None
    return round(value * fraction, 3) if value else None


def matmul_metrics(r: TorchRank, spec: GpuModel | None, fraction: float) -> list[Metric]:
    return [evaluate(f"gpu_matmul_{dtype}_tflops", round(v, 2), "TFLOP/s", _peak(spec, f"{dtype}_tflops", fraction),
                       ">=", r.where) for dtype, v in sorted(r.matmul_tflops.items())]


def copy_metrics(r: TorchRank, link: tuple[int, int] | None, fraction: float) -> list[Metric]:
    floor = round(link_rate_gbps(*link) * fraction, 2) if link else None
    return [evaluate(name, round(v, 2), "GB/s", floor, ">=", r.where)
            for name, v in (("gpu_h2d_gbps", r.h2d_gbps), ("gpu_d2h_gbps", r.d2h_gbps)) if v is not None]


def membw_metrics(r: TorchRank, spec: GpuModel | None, fraction: float) -> list[Metric]:
    if r.membw_gbps is None:
        return []
    return [evaluate("gpu_memory_bw_gbps", round(r.membw_gbps, 1), "GB/s",
                       _peak(spec, "memory_bandwidth_gbps", fraction), ">=", r.where)]


def train_metrics(r: TorchRank, max_ratio: float) -> list[Metric]:
    first, last = r.train.get("loss_first"), r.train.get("loss_last")
    if not first or last is None:
        return []
    return [evaluate("gpu_train_loss_ratio", round(last / first, 4), "ratio", max_ratio, "<=", r.where)]


def allreduce_metrics(ranks: list[TorchRank], busbw_min: float | None, where: str) -> tuple[list[Metric], list[str]]:
    """Rank 0's timing as metrics; a wrong sum on any rank is a problem."""
    problems = [f"{r.where}: all-reduce sum {r.allreduce.get('sum')}, expected {r.allreduce.get('expected')}"
                for r in ranks if r.allreduce and not r.allreduce.get("ok")]
    missing = [r.where for r in ranks if not r.allreduce]
    if missing:
        problems.append(f"no all-reduce result from {', '.join(missing)}")
    first = next((r.allreduce for r in ranks if r.allreduce), None)
    if not first:
        return [], problems or [f"{where}: no task reported an all-reduce"]
    metrics = [evaluate("gpu_allreduce_ms", round(first["seconds"] * 1000, 3), "ms", None, "<=", where)]
    if first["world"] > 1:
        metrics.append(evaluate("gpu_allreduce_busbw_gbps", round(first["busbw_gbps"], 2), "GB/s", busbw_min, ">=",
                                  where))
    return metrics, problems


def record(metric, m: Metric) -> Metric:
    """Record ``m`` for the running test through the report's ``metric`` fixture."""
    return metric(m.name, m.value, m.unit, m.threshold, m.op, node=m.node)


def run_steps(controller, steps: dict[str, tuple[str, str]], timeout: float) -> dict[str, CommandResult]:
    """``{key: (srun args, command)}`` → ``{key: result}``, every step submitted from
    ``controller`` at once (one per GPU node: wall time follows the slowest node)."""
    if not steps:
        return {}
    with ThreadPoolExecutor(max_workers=min(len(steps), DEFAULT_FANOUT)) as pool:
        futures = {key: pool.submit(srun, controller, args, command, timeout) for key, (args, command) in steps.items()}
        return {key: f.result() for key, f in futures.items()}
