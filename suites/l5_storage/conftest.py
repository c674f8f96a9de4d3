"""What the layer-5 storage checks run over: the shared filesystems the config declares.

Every ``storage`` entry and every virtio-fs mount of the nodes becomes a :class:`Target`
(kind, mount point, the nodes that must mount it, expected source, thresholds, test sizes).
Tests ask for one of these parameters and run once per item:

- ``mount_case``   (target, node)     one per node that must mount it
- ``pair_case``    (target, a, b)     node pairs of a ring over those nodes, thinned to ``pairs_max``
- ``target``       one per target

The ``scratch`` fixture gives each target a directory on the filesystem for this run,
removed at the end.
"""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass

import pytest

from pytest_hpcvalidate.config.model import StorageThresholds
from pytest_hpcvalidate.hostlist import expand
from pytest_hpcvalidate.plugin import HPC
from pytest_hpcvalidate.sampling import ring_pairs


@dataclass(frozen=True)
class Target:
    """One shared filesystem to check, resolved against the config's nodes."""

    kind: str
    mount_point: str
    nodes: tuple[str, ...]
    source: str | None
    thresholds: StorageThresholds
    size_mib: int = 64
    runtime_s: float = 1.0
    metadata_files: int = 200
    direct_io: bool = True
    pairs_max: int = 16
    storage_nodes: tuple[str, ...] = ()
    beegfs: object | None = None

    @property
    def id(self) -> str:
        return self.mount_point

    def compute_nodes(self, compute: set[str]) -> list[str]:
        """The nodes of this target that Slurm can run jobs on."""
        return [n for n in self.nodes if n in compute]


def targets(model) -> list[Target]:
    """The config's storage entries, then its virtio-fs mounts (grouped by mount point and tag)."""
    if model is None:
        return []
    compute = [n.name for n in model.resolved_nodes() if n.role == "compute"]
    out = []
    for s in model.storage:
        nodes = compute if s.nodes == "ALL" else expand(s.nodes)
        out.append(Target(s.kind, s.mount_point, tuple(nodes), s.source, s.thresholds, s.test_size_mib,
                          s.test_runtime_s, s.metadata_files, s.direct_io, s.pairs_max, tuple(s.storage_nodes),
                          s.beegfs))
    virtio: dict[tuple[str, str], list[str]] = {}
    for n in model.resolved_nodes():
        for m in n.virtio_fs:
            virtio.setdefault((m.mount_point, m.tag), []).append(n.name)
    declared = {t.mount_point for t in out}
    for (mp, tag), nodes in virtio.items():
        if mp not in declared:
            out.append(Target("virtiofs", mp, tuple(nodes), tag, StorageThresholds()))
    return out


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    state = metafunc.config.stash.get(HPC, None)
    all_targets = targets(state.model if state is not None else None)
    if "mount_case" in metafunc.fixturenames:
        cases = [(t, n) for t in all_targets for n in t.nodes]
        metafunc.parametrize("mount_case", cases, ids=[f"{n}:{t.id}" for t, n in cases], scope="session")
    if "pair_case" in metafunc.fixturenames:
        cases = [(t, a, b) for t in all_targets for a, b in ring_pairs(list(t.nodes), t.pairs_max)]
        metafunc.parametrize("pair_case", cases, ids=[f"{a}->{b}:{t.id}" for t, a, b in cases], scope="session")
    if "target" in metafunc.fixturenames:
        metafunc.parametrize("target", all_targets, ids=[t.id for t in all_targets], scope="session")


@pytest.fixture(scope="session")
def scratch(cluster):
    """``scratch(target)`` → a directory on the target's filesystem for this run (created on
    first use from the target's first node; removed at the end)."""
    made: dict[str, tuple[str, str]] = {}
    # on an existing cluster the run's own id (its jobs are named hpcv-<run id> too)
    run_id = cluster.controller.facts.get("run_id") or f"{os.getpid()}-{int(time.time())}"
    run_id = f".hpcv-{run_id}"

    def get(target: Target) -> str:
        if target.mount_point not in made:
            path = f"{target.mount_point.rstrip('/')}/{run_id}"
            node = cluster.node(target.nodes[0])
            r = node.run(f"mkdir -p {shlex.quote(path)} && chmod 1777 {shlex.quote(path)}", timeout=30)
            assert r.ok, f"cannot create a scratch directory on {target.mount_point}: {r.describe()}"
            made[target.mount_point] = (path, node.name)
        return made[target.mount_point][0]

    yield get
    for path, node in made.values():
        cluster.node(node).run(f"rm -rf {shlex.quote(path)}", timeout=120)


@pytest.fixture(scope="session")
def partition_of(hpc_config):
    """``partition_of(nodes)`` → ``-p NAME`` of a partition holding every node ('' = default)."""

    def pick(nodes: list[str]) -> str:
        for p in sorted(hpc_config.slurm.partitions, key=lambda p: not p.default):
            if p.nodes == "ALL" or set(nodes) <= set(expand(p.nodes)):
                return f"-p {p.name}"
        return ""

    return pick


@pytest.fixture(scope="session")
def compute_names(hpc_config) -> set[str]:
    return {n.name for n in hpc_config.resolved_nodes() if n.role == "compute"}
