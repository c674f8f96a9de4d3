"""Layer 4, containers: the runtime is on every compute node at the version the config needs,
and the image is there, readable and the same (sha256) on every node."""

from __future__ import annotations

from collections import Counter

import pytest

from pytest_hpcvalidate.probes import containers as ctr

pytestmark = pytest.mark.requires("containers")


def test_runtime_present_with_minimum_version(compute_node, containers, runtime_versions):
    r = runtime_versions[compute_node.name]
    program = ctr.PROGRAMS[containers.runtime]
    version = ctr.parse_version(r.stdout) if r.ok else None
    assert version is not None, (
        f"{compute_node.name}: the {containers.runtime} runtime ({program}) is missing or does not run: {r.describe()}"
    )
    if containers.min_version:
        assert ctr.at_least(version, containers.min_version), (
            f"{compute_node.name}: {program} {version} is older than the required {containers.min_version}"
        )


def test_image_present_and_readable(compute_node, containers, image_facts):
    problem = image_facts[compute_node.name].problem()
    assert problem is None, f"{compute_node.name}: the image {containers.image} is {problem}"


def test_image_checksum(compute_node, containers, image_digests, image_facts):
    """The image's sha256 (a file's, or a directory image's tree digest) is the configured one;
    without one configured, every node holds the same image as the nodes with a usable image."""
    name = compute_node.name
    digest, r = image_digests[name]
    problem = image_facts[name].problem()
    assert digest and problem is None, (
        f"{name}: cannot checksum the image {containers.image}: {problem or r.describe()}"
    )
    if containers.sha256:
        assert digest == containers.sha256, (
            f"{name}: the image {containers.image} has sha256 {digest}, the config says {containers.sha256}"
        )
        return
    usable = Counter(d for n, (d, _) in image_digests.items() if d and image_facts[n].problem() is None)
    common, count = usable.most_common(1)[0]
    assert digest == common, (
        f"{name}: the image {containers.image} has sha256 {digest}, {count} other node(s) have {common}"
    )
