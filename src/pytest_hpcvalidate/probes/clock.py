"""Clock facts: how far a node's wall clock is from the machine pytest runs on.

Each reading brackets the node's ``date +%s.%N`` between two local clock reads: the node's
time minus the midpoint is its offset, and half the interval bounds the error (the command's
round trip). Two nodes' offsets, both against the same local clock, give their skew to each
other whatever the local clock's own error, within the sum of the two bounds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

DATE = "date +%s.%N"


@dataclass(frozen=True)
class ClockReading:
    node: str
    offset_s: float | None     # node clock minus the local clock at the midpoint
    uncertainty_s: float       # half the round trip of the best sample
    error: str = ""

    def skew_to(self, other: ClockReading) -> tuple[float, float]:
        """(this clock minus ``other``, the bound on that difference's error)."""
        assert self.offset_s is not None and other.offset_s is not None
        return self.offset_s - other.offset_s, self.uncertainty_s + other.uncertainty_s


def parse_epoch(text: str) -> float | None:
    try:
        return float(text.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def read(node, samples: int = 3) -> ClockReading:
    """The node's offset from the local clock: the sample with the shortest round trip of
    ``samples``."""
    best: tuple[float, float] | None = None
    said = ""
    for _ in range(samples):
        before = time.time()
        r = node.run(DATE, timeout=15)
        after = time.time()
        value = parse_epoch(r.stdout) if r.ok else None
        if value is None:
            said = r.describe() if not r.ok else f"'{DATE}' printed {r.stdout.strip()[:80]!r}"
            continue
        sample = (value - (before + after) / 2, (after - before) / 2)
        if best is None or sample[1] < best[1]:
            best = sample
    if best is None:
        return ClockReading(node.name, None, 0.0, error=said or "no reading")
    return ClockReading(node.name, best[0], best[1])
