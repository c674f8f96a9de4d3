"""The sign-off as HTML: ``signoff.html`` next to ``signoff.md`` (one page, no scripts, opens
from disk anywhere), and the same tables as the description of the sign-off entry in the
Allure report (``allure_files.write_signoff_result``), so a reviewer finds the verdict per
area in the one report they open. Rows come from ``signoff`` (shared with the markdown).
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from .signoff import (AREA_COLUMNS, BLOCKED, FAIL, LEGEND, METRIC_COLUMNS, NOT_RUN, PASS, SignOff, area_rows,
                      failure_rows, metric_rows)

_COLOR = {PASS: "#1a7f37", FAIL: "#cf222e", BLOCKED: "#9a6700", NOT_RUN: "#8250df", "ok": "#1a7f37", "FAILED": "#cf222e"}

_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#1f2328}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}"
    "th{background:#f6f8fa}.verdict{font-weight:bold}"
)


def _verdict(v: str) -> str:
    return f'<span class="verdict" style="color:{_COLOR.get(v, "inherit")}">{escape(v)}</span>'


def _table(header: list[str], rows: list[list[str]], verdict_col: int | None = None, code_col: int | None = None) -> str:
    def cell(i: int, text: str) -> str:
        if i == verdict_col:
            return _verdict(text)
        return f"<code>{escape(text)}</code>" if i == code_col else escape(text)

    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(i, c)}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def fragment(s: SignOff) -> str:
    """The sign-off tables (areas, failures, metrics, fingerprint) as an HTML fragment."""
    exit_code = f" · exit code {s.exit_code}" if s.exit_code is not None else ""
    parts = [
        f"<p>Cluster <code>{escape(s.cluster)}</code>: {_verdict(s.verdict)} · {escape(s.timestamp)}{exit_code}</p>",
        _table(AREA_COLUMNS, area_rows(s), verdict_col=3),
    ]
    failures = failure_rows(s)
    if failures:
        parts += ["<h3>Failures</h3>", _table(["Area", "Check", "Outcome", "Message"], failures, code_col=1)]
    metrics = metric_rows(s)
    if metrics:
        parts += ["<h3>Metrics</h3>", _table(METRIC_COLUMNS, metrics, verdict_col=7, code_col=1)]
    if s.fingerprint:
        parts += ["<h3>Cluster fingerprint</h3>", _table(["Fact", "Value"], [list(kv) for kv in s.fingerprint.items()])]
    parts.append(f"<p>{escape(LEGEND)}</p>")
    return "\n".join(parts)


def page(s: SignOff) -> str:
    title = f"Sign-off: cluster {s.cluster}: {s.verdict}"
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_CSS}</style></head>\n<body><h1>{escape(title)}</h1>\n{fragment(s)}\n</body></html>\n"
    )


def write_html(s: SignOff, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page(s))
    return path
