"""Comparing a run's metrics with an earlier run's ``metrics.json`` (``--hpc-baseline FILE``).

A metric is matched with the baseline's by (check, name, node); the check is written as
``l1_network::test_x[c1]``, so the same suites run from another directory still match. The
direction comes from the metric's ``op``: ``>=`` (the threshold is a minimum) means higher is
better, ``<=`` (a maximum) lower is better. A metric regressed when it is worse than its
baseline value by more than ``thresholds.regression_tolerance_pct`` percent of that value;
it then fails like a missed threshold, with a message naming the metric, the node, the value
before and now, and the tolerance.

Not compared: metrics found in only one of the two runs, and baseline values of zero or not
finite (a relative change has no meaning there); such a metric keeps its own verdict.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

from ..layering import short_id
from .metrics import Metric, num

_FIX = "pass the metrics.json that an earlier run wrote into its --hpc-report-dir"


class BaselineError(ValueError):
    """The baseline file cannot be used; the message is one line naming the file and the fix."""


@dataclass(frozen=True)
class Baseline:
    path: str
    cluster: str | None
    values: dict[tuple[str, str, str], float]


def metric_key(name: str, node: str | None, nodeid: str | None) -> tuple[str, str, str]:
    return (short_id(nodeid) if nodeid else "(run)", name, node or "")


def load(path: str | Path) -> Baseline:
    where = f"--hpc-baseline {path}"
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise BaselineError(f"{where}: cannot read it ({exc.strerror or exc}); {_FIX}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaselineError(f"{where}: not JSON (line {exc.lineno}: {exc.msg}); {_FIX}") from None
    metrics = doc.get("metrics") if isinstance(doc, dict) else None
    if not isinstance(metrics, list):
        raise BaselineError(f"{where}: has no 'metrics' list; {_FIX}")
    values: dict[tuple[str, str, str], float] = {}
    for i, d in enumerate(metrics):
        if not isinstance(d, dict) or not isinstance(d.get("name"), str):
            raise BaselineError(f"{where}: metrics[{i}].name: missing; {_FIX}")
        value = d.get("value")
        if value is None:  # NaN is written as null: nothing to compare with
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BaselineError(f"{where}: metrics[{i}].value: must be a number, got {value!r}; {_FIX}")
        values[metric_key(d["name"], d.get("node"), d.get("nodeid"))] = float(value)
    cluster = doc.get("cluster")
    return Baseline(str(path), cluster if isinstance(cluster, str) else None, values)


def compare(m: Metric, baseline: Baseline, tolerance_pct: float) -> Metric:
    """``m`` with its baseline value and change; failed with a message when it regressed."""
    before = baseline.values.get(metric_key(m.name, m.node, m.nodeid))
    if before is None:
        return m
    if before == 0 or not math.isfinite(before) or not math.isfinite(m.value):
        return replace(m, baseline=before)
    change = (m.value - before) / abs(before) * 100
    worse_by = -change if m.op == ">=" else change
    regressed = worse_by > tolerance_pct
    m = replace(m, baseline=before, change_pct=round(change, 3), regressed=regressed)
    if not regressed:
        return m
    where = f" on {m.node}" if m.node else ""
    better = "higher" if m.op == ">=" else "lower"
    unit = f" {m.unit}" if m.unit else ""
    message = (
        f"{m.name}{where} = {num(m.value)}{unit}, regressed from {num(before)}{unit} in the baseline "
        f"({change:+.1f}%; tolerance {num(tolerance_pct)}%, {better} is better)"
    )
    return replace(m, passed=False, message=message if m.passed else f"{m.message}; {message}")
