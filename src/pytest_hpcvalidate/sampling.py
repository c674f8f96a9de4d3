"""Which node pairs a pairwise check measures.

All-pairs is quadratic; a ring (each node sends to the next, the last to the first) exercises
every node as sender and receiver with n pairs. On large clusters the ring is thinned evenly
to ``limit`` pairs, deterministically, so reruns measure the same pairs and trends line up.
"""

from __future__ import annotations


def ring_pairs(names: list[str], limit: int | None = None) -> list[tuple[str, str]]:
    """``[(a, b), (b, c), ..., (z, a)]`` thinned evenly to at most ``limit`` pairs."""
    if len(names) < 2:
        return []
    pairs = [(names[i], names[(i + 1) % len(names)]) for i in range(len(names))]
    if limit is None or len(pairs) <= limit:
        return pairs
    step = len(pairs) / limit
    return [pairs[int(i * step)] for i in range(limit)]


def pair_id(pair: tuple[str, str]) -> str:
    return f"{pair[0]}->{pair[1]}"
