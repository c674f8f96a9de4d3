"""Layer 1, nodes: the compute nodes are one image: the same kernel, OS release and packages."""

from __future__ import annotations

import pytest

from pytest_hpcvalidate.capabilities import not_applicable
from pytest_hpcvalidate.probes import nodeimage


@pytest.fixture(scope="session")
def node_images(cluster) -> dict[str, nodeimage.NodeImage | Exception]:
    """{compute node: its kernel, OS release and packages, or why they could not be read};
    every compute node at once."""
    outcomes = cluster.map(nodeimage.read, cluster.compute)
    return {name: o.value if o.error is None else o.error for name, o in outcomes.items()}


@pytest.fixture(scope="session")
def image_differences(node_images, node_spec, hpc_config) -> dict[str, list[str]]:
    """{compute node: how it differs from the others} over the nodes whose software was read
    (once for all nodes: the comparison is over the whole cluster)."""
    images = {n: i for n, i in node_images.items() if not isinstance(i, Exception)}
    groups = {n: node_spec[n].origin for n in images}
    return nodeimage.differences(images, groups, tuple(hpc_config.node_image.ignore_packages))


def test_node_runs_the_same_kernel_os_and_packages_as_the_others(compute_node, node_images, image_differences,
                                                                 hpc_config):
    """A compute node reinstalled from an older image, or left out of an update, runs another
    kernel, MPI, PMIx or munge than its peers, and jobs fail only where they touch it. Its
    kernel release and OS are compared with every other compute node's, each package's
    version with the other nodes that have it, and which packages it has with the other
    nodes of its config group (``compute[i]``). ``node_image.ignore_packages`` names the
    packages allowed to differ."""
    mine = node_images[compute_node.name]
    if isinstance(mine, Exception):
        raise AssertionError(str(mine))
    if sum(not isinstance(i, Exception) for i in node_images.values()) < 2:
        not_applicable(f"{compute_node.name} is the only compute node whose software could be read: "
                       "nothing to compare it with")
    found = image_differences.get(compute_node.name)
    ignored = hpc_config.node_image.ignore_packages
    assert not found, (
        f"{compute_node.name} runs other software than the other compute nodes: " + "; ".join(found) +
        f". Reinstall or update it to the cluster's image ({mine.tool} package list compared"
        + (", ignoring " + ", ".join(ignored) if ignored else "") + ")")
