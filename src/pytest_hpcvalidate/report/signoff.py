"""Acceptance sign-off: one verdict per required area, from the run's test reports.

Verdicts, per area:

- ``PASS``: at least one check of the area passed, none failed or errored, none was blocked
  (skips for a missing capability are allowed: ``--hpc-strict`` turns skips of what the
  config declares into failures);
- ``FAIL``: a check of the area failed or errored (setup, call or teardown, or its file
  did not collect);
- ``BLOCKED``: no check failed, but checks were skipped because a lower layer failed;
- ``NOT-RUN``: no check of the area ran: none collected, deselected (``-k``/``-m``/paths),
  or all skipped for other reasons.

The run signs off only when every required area is PASS and no run-level metric (such as
the provisioning time) missed its threshold. Anything else makes pytest exit non-zero,
also when the areas were NOT-RUN because a subset was selected on purpose: a CI gate must
never read a partial run as an acceptance.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from ..config.areas import AREA_LAYER, AREAS, LAYER_TITLES
from ..layering import _PATH_LAYER, short_id
from .metrics import Metric
from .redact import redact

PASS, FAIL, BLOCKED, NOT_RUN = "PASS", "FAIL", "BLOCKED", "NOT-RUN"
#: outcomes of one test
PASSED, FAILED, ERROR, SKIPPED, BLOCKED_SKIP, XFAILED, INCOMPLETE = (
    "passed", "failed", "error", "skipped", "blocked", "xfailed", "incomplete",
)
COUNTED = (PASSED, FAILED, ERROR, BLOCKED_SKIP, SKIPPED, XFAILED, INCOMPLETE)


@dataclass
class TestOutcome:
    __test__ = False  # not a pytest test class

    nodeid: str
    layer: int | None = None
    area: str | None = None
    outcome: str = INCOMPLETE
    #: first line of the failure, or the skip reason
    message: str = ""
    metrics: list[Metric] = field(default_factory=list)


def _first_line(text: str) -> str:
    for line in str(text).splitlines():
        line = line.strip()
        if line:
            for prefix in ("AssertionError: ", "Failed: ", "Skipped: ", "E   "):
                line = line.removeprefix(prefix)
            head, sep, rest = line.partition("MetricFailure: ")
            return rest if sep and not head.strip(" .abcdefghijklmnopqrstuvwxyz_") else line
    return ""


def failure_message(report) -> str:
    """The first line of a failed report's message (what an operator reads first), secrets masked."""
    longrepr = report.longrepr
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        return redact(_first_line(crash.message))
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return redact(_first_line(longrepr[2]))
    return redact(_first_line(getattr(report, "longreprtext", "") or str(longrepr)))


def skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return redact(_first_line(longrepr[2]))
    return redact(_first_line(str(longrepr)))


class OutcomeCollector:
    """Folds the setup/call/teardown reports of each test into one :class:`TestOutcome`.

    Fed from ``pytest_runtest_logreport``, which the xdist controller receives for every
    worker's tests: ``report.hpc_place`` and ``report.hpc_metrics`` travel with the report.
    """

    def __init__(self) -> None:
        self.tests: dict[str, TestOutcome] = {}

    def add(self, report) -> None:
        t = self.tests.get(report.nodeid)
        if t is None:
            t = self.tests[report.nodeid] = TestOutcome(report.nodeid)
        place = getattr(report, "hpc_place", None)
        if place:
            t.layer, t.area = place.get("layer"), place.get("area")
        t.metrics += [Metric.from_dict(d) for d in getattr(report, "hpc_metrics", None) or []]
        when = report.when
        if report.failed:
            if when == "call":
                t.outcome, t.message = FAILED, failure_message(report)
            elif t.outcome not in (FAILED, ERROR):
                t.outcome, t.message = ERROR, failure_message(report)
        elif report.skipped and t.outcome in (INCOMPLETE, PASSED):
            if hasattr(report, "wasxfail"):
                t.outcome, t.message = XFAILED, str(report.wasxfail or "xfail")
            else:
                reason = skip_reason(report)
                t.outcome = BLOCKED_SKIP if reason.startswith("blocked by") else SKIPPED
                t.message = reason
        elif report.passed and when == "call" and t.outcome == INCOMPLETE:
            t.outcome = PASSED

    def add_collect_error(self, nodeid: str, message: str) -> None:
        """A suite file that does not import: its area cannot pass."""
        m = _PATH_LAYER.search(nodeid)
        area = m.group(2) if m else None
        layer = AREA_LAYER.get(area, int(m.group(1)) if m else None) if area else None
        self.tests[nodeid] = TestOutcome(nodeid, layer, area, ERROR, _first_line(message) or "collection failed")


def _short(nodeid: str) -> str:
    """``l1_network::test_x[c1]`` for a test; a file (collection error) keeps its path."""
    return short_id(nodeid) if "::" in nodeid else nodeid


@dataclass
class AreaResult:
    area: str
    layer: int
    required: bool
    verdict: str
    counts: dict[str, int]
    failures: list[dict]
    blocked_by: list[str]
    skipped: list[dict]
    metrics: list[Metric]

    @property
    def title(self) -> str:
        return LAYER_TITLES.get(self.layer, f"L{self.layer}")

    def evidence(self, limit: int = 2) -> str:
        """One line for the table: why this verdict."""
        if self.verdict == FAIL:
            parts = [f"{_short(f['nodeid'])}: {f['message']}" for f in self.failures[:limit]]
            more = len(self.failures) - limit
            return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
        if self.verdict == BLOCKED:
            return "; ".join(self.blocked_by)
        if self.verdict == NOT_RUN:
            if not self.counts["total"]:
                return "no check of this area ran (none collected or deselected)"
            reasons = sorted({s["reason"] for s in self.skipped})
            return "all skipped: " + "; ".join(reasons[:limit]) + (" ..." if len(reasons) > limit else "")
        n = len(self.metrics)
        passed = self.counts[PASSED]
        text = f"{passed} check{'s' if passed != 1 else ''} passed"
        return text + (f", {n} metric{'s' if n != 1 else ''} within thresholds" if n else "")

    def to_dict(self) -> dict:
        return {
            "area": self.area,
            "layer": self.layer,
            "layer_title": self.title,
            "required": self.required,
            "verdict": self.verdict,
            "counts": self.counts,
            "failures": self.failures,
            "blocked_by": self.blocked_by,
            "skipped": self.skipped,
            "metrics": [m.to_dict() for m in self.metrics],
        }


def area_verdict(tests: list[TestOutcome]) -> str:
    outcomes = {t.outcome for t in tests}
    if outcomes & {FAILED, ERROR}:
        return FAIL
    if BLOCKED_SKIP in outcomes:
        return BLOCKED
    if PASSED in outcomes:
        return PASS
    return NOT_RUN


def area_result(area: str, tests: list[TestOutcome], required: bool) -> AreaResult:
    counts = {k: sum(t.outcome == k for t in tests) for k in COUNTED}
    counts["total"] = len(tests)
    return AreaResult(
        area=area,
        layer=AREA_LAYER.get(area) or min((t.layer for t in tests if t.layer), default=0),
        required=required,
        verdict=area_verdict(tests),
        counts=counts,
        failures=[{"nodeid": t.nodeid, "outcome": t.outcome, "message": t.message} for t in tests if t.outcome in (FAILED, ERROR)],
        blocked_by=sorted({t.message for t in tests if t.outcome == BLOCKED_SKIP}),
        skipped=[{"nodeid": t.nodeid, "reason": t.message} for t in tests if t.outcome in (SKIPPED, XFAILED)],
        metrics=[m for t in tests for m in t.metrics],
    )


@dataclass
class SignOff:
    cluster: str
    required: list[str]
    areas: list[AreaResult]
    run_metrics: list[Metric]
    fingerprint: dict[str, str]
    timestamp: str
    invocation: str = ""
    exit_code: int | None = None

    @property
    def passed(self) -> bool:
        required_ok = all(a.verdict == PASS for a in self.areas if a.required)
        return required_ok and all(m.passed for m in self.run_metrics)

    @property
    def verdict(self) -> str:
        return PASS if self.passed else FAIL

    def to_dict(self) -> dict:
        return {
            "cluster": self.cluster,
            "verdict": self.verdict,
            "timestamp": self.timestamp,
            "exit_code": self.exit_code,
            "invocation": self.invocation,
            "required_areas": self.required,
            "verdicts": {a.area: a.verdict for a in self.areas if a.required},
            "areas": [a.to_dict() for a in self.areas],
            "run_metrics": [m.to_dict() for m in self.run_metrics],
            "fingerprint": self.fingerprint,
        }


def compute(
    tests: Iterable[TestOutcome],
    model,
    fingerprint: dict[str, str],
    run_metrics: Iterable[Metric] = (),
    invocation: str = "",
) -> SignOff:
    """The sign-off of a run: every required area (NOT-RUN when no check of it ran), then
    any other area a check ran in (for information; it does not gate)."""
    by_area: dict[str, list[TestOutcome]] = {}
    for t in tests:
        if t.area is not None:
            by_area.setdefault(t.area, []).append(t)
    required = list(model.required_areas())
    others = [a for a in by_area if a not in required]
    order = [a for a in AREAS if a in required or a in others] + [a for a in others if a not in AREAS]
    return SignOff(
        cluster=model.name,
        required=required,
        areas=[area_result(a, by_area.get(a, []), a in required) for a in order],
        run_metrics=list(run_metrics),
        fingerprint=dict(fingerprint),
        timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        invocation=invocation,
    )


# ----------------------------------------------------------------------------- files
def write_json(signoff: SignOff, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(signoff.to_dict(), indent=2, default=str) + "\n")
    return path


AREA_COLUMNS = ["Area", "Layer", "Required", "Verdict", "Passed", "Failed", "Blocked", "Skipped", "Evidence"]
METRIC_COLUMNS = ["Area", "Check", "Metric", "Node", "Value", "Threshold", "Baseline", "Verdict"]
LEGEND = (
    "PASS: a check of the area passed and none failed or was blocked. FAIL: a check failed. "
    "BLOCKED: checks were skipped because a lower layer failed. NOT-RUN: no check of the area ran "
    "(also when deselected with -k/-m: a partial run never signs off). "
    "The run signs off only when every required area is PASS; otherwise pytest exits non-zero."
)


def area_rows(s: SignOff) -> list[list[str]]:
    """One row per area (then one per run-level metric), as :data:`AREA_COLUMNS`; the verdict
    is the 4th cell (the markdown and HTML renderers style it)."""
    rows = []
    for a in s.areas:
        c = a.counts
        rows.append([a.area, a.title, "yes" if a.required else "no", a.verdict, str(c[PASSED]),
                     str(c[FAILED] + c[ERROR]), str(c[BLOCKED_SKIP]), str(c[SKIPPED] + c[XFAILED]), a.evidence()])
    for m in s.run_metrics:
        rows.append(["run", "", "yes", PASS if m.passed else FAIL, "", "", "", "", m.message])
    return rows


def failure_rows(s: SignOff) -> list[list[str]]:
    """[area, test id, outcome, message] per failed test."""
    return [[a.area, f["nodeid"], f["outcome"], f["message"]] for a in s.areas for f in a.failures]


def metric_rows(s: SignOff) -> list[list[str]]:
    """One row per metric, as :data:`METRIC_COLUMNS` (the verdict: ``ok``/``FAILED``)."""
    from .metrics import num

    rows = []
    for area, m in [(a.area, m) for a in s.areas for m in a.metrics] + [("run", m) for m in s.run_metrics]:
        threshold = "" if m.threshold is None else f"{m.op} {num(m.threshold)} {m.unit}".rstrip()
        baseline = "" if m.baseline is None else f"{num(m.baseline)} {m.unit}".rstrip() + (
            "" if m.change_pct is None else f" ({m.change_pct:+.1f}%)")
        rows.append([area, _short(m.nodeid) if m.nodeid else "(run)", m.name, m.node or "",
                     f"{num(m.value)} {m.unit}".rstrip(), threshold, baseline, "ok" if m.passed else "FAILED"])
    return rows


def _md(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]], align: list[str]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"] + ["| " + " | ".join(row) + " |" for row in rows]


def markdown(signoff: SignOff) -> str:
    s = signoff
    lines = [
        f"# Sign-off: cluster `{s.cluster}`: {s.verdict}",
        "",
        f"{s.timestamp} · exit code {s.exit_code} · `{_md(s.invocation)}`" if s.invocation else f"{s.timestamp} · exit code {s.exit_code}",
        "",
    ]
    rows = [[_md(c) if i != 3 else f"**{c}**" for i, c in enumerate(r)] for r in area_rows(s)]
    lines += _md_table(AREA_COLUMNS, rows, ["---"] * 4 + ["---:"] * 4 + ["---"])
    failures = failure_rows(s)
    if failures:
        lines += ["", "## Failures", ""]
        lines += [f"- **{area}** `{_md(nodeid)}` ({outcome}): {_md(message)}" for area, nodeid, outcome, message in failures]
    metrics = metric_rows(s)
    if metrics:
        rows = [[_md(c) for c in r[:1]] + [f"`{_md(r[1])}`"] + [_md(c) for c in r[2:7]]
                + ["ok" if r[7] == "ok" else "**FAILED**"] for r in metrics]
        lines += ["", "## Metrics", ""] + _md_table(METRIC_COLUMNS, rows, ["---"] * 4 + ["---:"] + ["---"] * 3)
    if s.fingerprint:
        lines += ["", "## Cluster fingerprint", ""]
        lines += _md_table(["Fact", "Value"], [[_md(k), _md(v)] for k, v in s.fingerprint.items()], ["---"] * 2)
    lines += ["", LEGEND, ""]
    return "\n".join(lines)


def write_markdown(signoff: SignOff, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(signoff))
    return path


# ----------------------------------------------------------------------------- terminal
_STYLE = {PASS: "bold green", FAIL: "bold red", BLOCKED: "bold yellow", NOT_RUN: "bold magenta"}


def terminal_lines(signoff: SignOff, width: int, markup: bool) -> list[str]:
    """The sign-off table rendered by rich, as lines for pytest's terminal reporter."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAVY, show_edge=False, pad_edge=False)
    table.add_column("Area")
    table.add_column("Verdict")
    for name in ("pass", "fail", "blkd", "skip"):
        table.add_column(name, justify="right")
    table.add_column("Evidence", overflow="fold", ratio=1)
    for a in signoff.areas:
        c = a.counts
        table.add_row(
            Text(f"L{a.layer} {a.area}" + ("" if a.required else "*")),
            Text(a.verdict, style=_STYLE[a.verdict]),
            str(c[PASSED]),
            str(c[FAILED] + c[ERROR]),
            str(c[BLOCKED_SKIP]),
            str(c[SKIPPED] + c[XFAILED]),
            Text(a.evidence()),  # Text: brackets in test ids are not markup
            style=None if a.required else "dim",
        )
    for m in signoff.run_metrics:
        verdict = PASS if m.passed else FAIL
        table.add_row("run", Text(verdict, style=_STYLE[verdict]), "", "", "", "", Text(m.message))
    if not all(a.required for a in signoff.areas):
        table.caption = "* not required for sign-off (informational)"
        table.caption_justify = "left"
    buf = io.StringIO()
    console = Console(
        file=buf, width=max(width, 60), force_terminal=markup, no_color=not markup,
        color_system="standard" if markup else None, highlight=False, emoji=False,
    )
    console.print(table)
    return [line.rstrip() for line in buf.getvalue().rstrip("\n").splitlines()]
