"""Measured numbers with their unit, threshold and verdict.

A check records a metric through the ``metric`` fixture and asserts its verdict::

    m = metric("ping_rtt_p50_ms", p50, "ms", thresholds.latency_p50_ms_max, "<=", node=node.name)
    assert m.passed, m.message

Every metric is attached to its Allure test (a step, failed when the threshold is missed,
holding a JSON attachment: ``evidence.write_metric``), travels with the test's report (so
pytest-xdist workers hand them to the controller) and ends up in ``<report dir>/metrics.json``.
A metric that misses its threshold fails its test even if the test forgets to assert it.
With ``--hpc-baseline`` it is also compared with the same metric of an earlier run
(``baseline.compare``): one that got worse by more than the tolerance fails the same way.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Literal

Op = Literal[">=", "<="]
OPS = (">=", "<=")


#: how a test that recorded a failed metric without asserting it fails
MISSED = "metric missed its threshold"


class MetricFailure(AssertionError):
    """A metric missed its threshold (an assertion: Allure files it as a product defect)."""


@dataclass(frozen=True)
class Metric:
    """One measurement and its verdict; what the ``metric`` fixture returns."""

    name: str
    value: float
    unit: str
    threshold: float | None = None
    op: Op = ">="
    node: str | None = None
    #: the test that measured it; None for run-level metrics (provisioning time)
    nodeid: str | None = None
    passed: bool = True
    message: str = ""
    #: the same metric in the ``--hpc-baseline`` run; the change from it, % (+: higher now); its verdict
    baseline: float | None = None
    change_pct: float | None = None
    regressed: bool = False

    def __bool__(self) -> bool:  # `assert m` reads naturally too
        return self.passed

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Metric":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def evaluate(
    name: str,
    value: float,
    unit: str,
    threshold: float | None = None,
    op: str = ">=",
    node: str | None = None,
    nodeid: str | None = None,
) -> Metric:
    """The verdict of ``value`` against ``threshold`` (``>=``: a minimum, ``<=``: a maximum)."""
    if op not in OPS:
        raise ValueError(f"metric {name!r}: op must be '>=' or '<=', got {op!r}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"metric {name!r}: value must be a number, got {value!r}") from None
    if threshold is not None:
        threshold = float(threshold)
    where = f" on {node}" if node else ""
    shown = f"{name}{where} = {num(value)} {unit}".rstrip()
    if threshold is None:
        passed, message = not math.isnan(value), f"{shown} (no threshold)"
    elif math.isnan(value):
        passed, message = False, f"{shown}: not a number, the threshold is {op} {num(threshold)} {unit}".rstrip()
    else:
        passed = value >= threshold if op == ">=" else value <= threshold
        if passed:
            message = f"{shown} ({op} {num(threshold)} {unit}: ok)".replace(" :", ":")
        else:
            bound = "below the minimum" if op == ">=" else "above the maximum"
            message = f"{shown}, {bound} {num(threshold)} {unit}".rstrip()
    return Metric(name, value, unit, threshold, op, node, nodeid, passed, message)  # type: ignore[arg-type]


def num(x: float) -> str:
    """A number as messages show it (6 significant digits)."""
    return f"{x:.6g}"


def _finite(d: dict) -> dict:
    """JSON has no NaN/Infinity: such values are written as null."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def write_metrics(path: Path, metrics: Iterable[Metric], cluster: str | None = None) -> None:
    """``metrics.json``: {"cluster", "metrics": [{nodeid, name, value, unit, threshold, op,
    node, passed, message, baseline, change_pct, regressed}, ...]} in the order they were
    recorded. It is also what ``--hpc-baseline`` reads."""
    doc = {"cluster": cluster, "metrics": [_finite(m.to_dict()) for m in metrics]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
