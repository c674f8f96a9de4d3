"""Layer 5, mounts: every node that must mount a shared filesystem has it mounted, with the
configured type and source, read-write (a file can be created and removed); the filesystem
has at least the configured free space."""

from __future__ import annotations

import shlex

import pytest

from pytest_hpcvalidate.probes import storage

pytestmark = pytest.mark.requires("storage")


def test_mounted_with_type_source_read_write(mount_case, cluster):
    target, name = mount_case
    node = cluster.node(name)
    entry = storage.mount_at(storage.mounts(node), target.mount_point)
    problems = storage.mount_problems(name, entry, target.mount_point, target.kind, target.source)
    if not problems:
        probe = shlex.quote(f"{target.mount_point.rstrip('/')}/.hpcv-rw-{name}")
        r = node.run(f"touch {probe} && rm -f {probe}", timeout=30)
        if not r.ok:
            problems.append(f"{name}: cannot create a file on {target.mount_point}: {r.describe()}")
    assert not problems, "; ".join(problems)


def test_free_space_above_threshold(target, cluster, metric):
    """``df`` on every node of the filesystem (in parallel); the smallest figure counts."""
    results = cluster.run_all(f"df -P -B1 {shlex.quote(target.mount_point)}",
                              nodes=[cluster.node(n) for n in target.nodes], timeout=30)
    free = {}
    failed = []
    for name, r in results.items():
        space = storage.parse_df(r.stdout) if r.ok else None
        if space is None:
            failed.append(f"{name}: df {target.mount_point} failed: {r.describe()}")
        else:
            free[name] = space.avail_gib
    assert not failed, "; ".join(failed)
    worst = min(free, key=free.get)
    m = metric("storage_free_gib", round(free[worst], 3), "GiB", target.thresholds.free_space_gib_min, ">=",
               node=f"{worst}:{target.mount_point}")
    assert m.passed, f"{target.mount_point}: {m.message}"
