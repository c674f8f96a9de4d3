"""Fixtures of the container checks: the configured runtime and image, and per-node facts
gathered once, on every compute node at the same time (one fact per node, asserted per node)."""

from __future__ import annotations

import pytest

from pytest_hpcvalidate.hostlist import expand
from pytest_hpcvalidate.probes import containers as ctr
from pytest_hpcvalidate.probes import slurm


@pytest.fixture(scope="session")
def containers(hpc_config):
    """The config's ``containers`` section (tests here are marked ``requires("containers")``)."""
    return hpc_config.containers


@pytest.fixture(scope="session")
def runtime(containers, cluster) -> ctr.Runtime:
    return ctr.runtime_from_config(containers, cluster.shared_dir)


@pytest.fixture(scope="session")
def runtime_versions(cluster, containers):
    """{node: CommandResult} of the runtime's version command on every compute node."""
    return cluster.run_all(ctr.version_command(containers.runtime), nodes=cluster.compute, timeout=30)


@pytest.fixture(scope="session")
def image_facts(cluster, containers):
    """{node: ImageFacts} of the configured image on every compute node."""
    out = cluster.run_all(ctr.image_check_command(str(containers.image)), nodes=cluster.compute, timeout=30)
    return {name: ctr.parse_image_check(r.stdout) for name, r in out.items()}


@pytest.fixture(scope="session")
def image_digests(cluster, containers):
    """{node: (digest or None, CommandResult)} of the configured image on every compute node."""
    out = cluster.run_all(ctr.digest_command(str(containers.image)), nodes=cluster.compute, timeout=300)
    return {name: (ctr.parse_digest(r.stdout) if r.ok else None, r) for name, r in out.items()}


@pytest.fixture(scope="session")
def all_compute_partition(controller, cluster) -> str:
    """``-p NAME`` of a partition holding every compute node ('' when only the default does)."""
    hosts = {n.name for n in cluster.compute}
    for p in slurm.show_partitions(controller).values():
        if p.nodes == "ALL" or hosts <= set(expand(p.nodes)):
            return f"-p {p.name}"
    return ""
