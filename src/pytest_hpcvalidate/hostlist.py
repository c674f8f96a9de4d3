"""Slurm-style hostlists (``c[01-04,07],gpu1``) on top of ClusterShell's ``NodeSet``.

ClusterShell parses and formats ranges (padding included); this module adds the one thing
an operator expects that ``NodeSet`` does not do: the order written is the order kept.
``expand`` keeps the order of the comma-separated parts; ``compress`` only merges runs of
increasing numbers that follow each other, so ``expand(compress(names)) == names``.
"""

from __future__ import annotations

import re
from typing import Iterable

from ClusterShell.NodeSet import NodeSet, NodeSetException
from ClusterShell.RangeSet import RangeSet

_LAST_NUMBER = re.compile(r"^(.*?)(\d+)(\D*)$")


def _split_top_level(expr: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in expr:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"hostlist {expr!r}: ']' without '['")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise ValueError(f"hostlist {expr!r}: '[' without ']'")
    parts.append("".join(cur))
    return parts


def expand(expr: str) -> list[str]:
    """``"c[01-03],gpu1"`` → ``["c01", "c02", "c03", "gpu1"]``; raises ``ValueError`` on bad input."""
    if not isinstance(expr, str) or not expr.strip():
        raise ValueError("hostlist is empty")
    names: list[str] = []
    for part in _split_top_level(expr.strip()):
        part = part.strip()
        if not part:
            raise ValueError(f"hostlist {expr!r}: empty element")
        if any(c in part for c in "@!&^ \t*?"):
            raise ValueError(f"hostlist {expr!r}: {part!r} is not a node name or range")
        try:
            names.extend(NodeSet(part))
        except (NodeSetException, ValueError) as exc:
            raise ValueError(f"hostlist {expr!r}: {exc}") from None
    return names


def _key(name: str):
    """(prefix, number text, suffix) of a name's last number, or None when it has none."""
    m = _LAST_NUMBER.match(name)
    return (m.group(1), m.group(2), m.group(3)) if m else None


def _fits(width: int | None, digits: str) -> bool:
    """Can ``digits`` join a run whose numbers are padded to ``width`` (None: not padded)?"""
    if width is None:
        return not (len(digits) > 1 and digits.startswith("0"))
    return len(digits) == width


def compress(names: Iterable[str]) -> str:
    """``["c01", "c02", "c03", "gpu1"]`` → ``"c[01-03],gpu1"``; order kept, padding kept."""
    out: list[str] = []
    run: list[str] = []  # the digit strings of the current run
    run_key: tuple[str, str] | None = None
    width: int | None = None

    def flush() -> None:
        if not run:
            return
        prefix, suffix = run_key  # type: ignore[misc]
        if len(run) == 1:
            out.append(f"{prefix}{run[0]}{suffix}")
        else:
            rs = RangeSet(",".join(run))
            out.append(f"{prefix}[{rs}]{suffix}")
        run.clear()

    for name in names:
        k = _key(name)
        if k is None:
            flush()
            run_key = None
            out.append(name)
            continue
        prefix, digits, suffix = k
        if run and run_key == (prefix, suffix) and _fits(width, digits) and int(digits) > int(run[-1]):
            run.append(digits)
            continue
        flush()
        run_key = (prefix, suffix)
        width = len(digits) if (len(digits) > 1 and digits.startswith("0")) else None
        run.append(digits)
    flush()
    return ",".join(out)


def fold(names: Iterable[str]) -> str:
    """A set of names as one hostlist, in natural order: ``{"c10", "c2", "c1"}`` → ``c[1-2,10]``
    (``compress(sorted(...))`` would give ``c[1,10],c2``)."""
    names = list(names)
    return str(NodeSet.fromlist(names)) if names else ""
