"""The container checks (suites/l4_containers) pass on a healthy cluster and go red, naming the
node and what is wrong, when the runtime or image is broken on one node, when the image is not
the configured one (sha256, OS), and when Slurm's cgroup limits do not hold inside containers.

One real local cluster (ctl + g1 with 2 simulated GPUs + c1) with the local provider's test
image (charliecloud; the same image as an OCI bundle for Slurm's --container) serves the module.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import clusterkit
import pytest
import yaml

from pytest_hpcvalidate.faults import containers as ctrfaults
from pytest_hpcvalidate.faults import slurm as slurmfaults
from pytest_hpcvalidate.probes import containers as ctr

SUITE = Path(__file__).resolve().parents[2] / "suites" / "l4_containers"
pytestmark = [pytest.mark.integration, clusterkit.needs_local]

IMAGES = f"/var/lib/hpcvalidate/images/it-ctr-{os.getpid()}"
BODY = {
    "controller": {"name": "ctl", "cpus": 1, "memory_mb": 512},
    "compute": [
        {"names": "g1", "cpus": 2, "memory_mb": 1024, "gpus": {"count": 2, "type": "sim"}},
        {"names": "c1", "cpus": 2, "memory_mb": 1024},
    ],
    "slurm": {"gres_types": ["gpu"], "partitions": [{"name": "all", "nodes": "ALL", "default": True}]},
    "containers": {
        "runtime": "charliecloud", "image": f"{IMAGES}/image", "oci_bundle": f"{IMAGES}/bundle",
        "build_test_image": True, "binds": [str(clusterkit.STATE_ROOT)], "min_version": "0.30",
        "expect": {"os_release": "hpcvalidate test image"},
    },
}


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    with clusterkit.running_cluster("ct", BODY, tmp_path_factory.mktemp("ctr")) as made:
        yield made
    assert not Path(IMAGES).exists(), f"the image mount points {IMAGES} were left behind"


def run_checks(pytester, path: Path, *selection: str) -> dict[str, tuple[str, str]]:
    """{test id: (outcome, message)} of the container checks run against the running cluster."""
    return clusterkit.run_checks(pytester, path, *selection, suite_dir=SUITE, args=("-p", "no:randomly"))


failures = clusterkit.failures


def variant(path: Path, tmp_path: Path, **containers) -> Path:
    """The module's config with ``containers`` fields replaced (same cluster)."""
    doc = yaml.safe_load(path.read_text())
    doc["containers"] = {**doc["containers"], **containers}
    out = tmp_path / "variant.yaml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def test_healthy_cluster_passes_every_container_check(running, pytester):
    engine, path = running
    assert engine.timings["container_image_build"] < 30
    results = run_checks(pytester, path)
    assert failures(results) == {}
    passed = [k for k, (o, _) in results.items() if o == "passed"]
    assert len(passed) >= 18, results
    skipped = {k: m for k, (o, m) in results.items() if o == "skipped"}
    assert list(skipped) == ["test_torch_distributed_in_container_across_two_nodes"]
    assert "container-torch" in skipped["test_torch_distributed_in_container_across_two_nodes"]


def test_runtime_missing_on_one_node_fails_naming_it(running, pytester):
    engine, path = running
    with ctrfaults.runtime_missing(engine, "c1", "ch-run"):
        results = run_checks(pytester, path, "test_runtime_and_image.py::test_runtime_present_with_minimum_version",
                             "test_container_steps.py::test_containerised_step_runs_the_image_os")
    failed = failures(results)
    assert set(failed) == {"test_runtime_present_with_minimum_version[c1]", "test_containerised_step_runs_the_image_os[c1]"}
    assert "c1: the charliecloud runtime (ch-run) is missing" in failed["test_runtime_present_with_minimum_version[c1]"]


def test_runtime_older_than_required_fails(running, pytester, tmp_path):
    _, path = running
    results = run_checks(pytester, variant(path, tmp_path, min_version="99.1"),
                         "test_runtime_and_image.py::test_runtime_present_with_minimum_version")
    failed = failures(results)
    assert set(failed) == {"test_runtime_present_with_minimum_version[g1]", "test_runtime_present_with_minimum_version[c1]"}
    assert "older than the required 99.1" in failed["test_runtime_present_with_minimum_version[g1]"]


def test_image_missing_on_one_node_fails_naming_it(running, pytester):
    engine, path = running
    with ctrfaults.image_hidden(engine, "g1", BODY["containers"]["image"]):
        results = run_checks(pytester, path, "test_runtime_and_image.py", "test_container_steps.py::"
                             "test_containerised_step_runs_the_image_os")
    failed = failures(results)
    assert set(failed) == {"test_image_present_and_readable[g1]", "test_image_checksum[g1]",
                           "test_containerised_step_runs_the_image_os[g1]"}
    assert f"g1: the image {BODY['containers']['image']} is a directory without /bin/sh" in \
        failed["test_image_present_and_readable[g1]"]


def test_wrong_sha256_fails_with_both_hashes_and_the_right_one_passes(running, pytester, tmp_path):
    engine, path = running
    real, r = ctr.image_digest(engine.cluster.node("c1"), BODY["containers"]["image"])
    assert real, r.describe()
    wrong = "0" * 64
    failed = failures(run_checks(pytester, variant(path, tmp_path, sha256=wrong), "test_runtime_and_image.py::test_image_checksum"))
    assert set(failed) == {"test_image_checksum[g1]", "test_image_checksum[c1]"}
    assert f"has sha256 {real}, the config says {wrong}" in failed["test_image_checksum[c1]"]
    assert failures(run_checks(pytester, variant(path, tmp_path, sha256=real), "test_runtime_and_image.py::test_image_checksum")) == {}


def test_image_with_another_os_than_expected_fails(running, pytester, tmp_path):
    _, path = running
    failed = failures(run_checks(pytester, variant(path, tmp_path, expect={"os_release": "Rocky Linux 9"}),
                                 "test_container_steps.py::test_containerised_step_runs_the_image_os"))
    assert set(failed) == {"test_containerised_step_runs_the_image_os[g1]", "test_containerised_step_runs_the_image_os[c1]"}
    assert "the config expects 'Rocky Linux 9'" in failed["test_containerised_step_runs_the_image_os[c1]"]
    assert "reports OS 'hpcvalidate test image" in failed["test_containerised_step_runs_the_image_os[c1]"]


def test_memory_limit_off_lets_containers_exceed_mem(running, pytester):
    engine, path = running
    with slurmfaults.cgroup_setting(engine, "ConstrainRAMSpace", "no"):
        failed = failures(run_checks(pytester, path, "test_container_steps.py::test_container_over_its_memory_is_killed"))
    assert set(failed) == {"test_container_over_its_memory_is_killed[g1]", "test_container_over_its_memory_is_killed[c1]"}
    assert "the memory limit does not hold inside the container" in failed["test_container_over_its_memory_is_killed[c1]"]


def test_device_constraint_off_shows_gpus_in_container_without_gres(running, pytester):
    engine, path = running
    with slurmfaults.cgroup_setting(engine, "ConstrainDevices", "no"):
        failed = failures(run_checks(pytester, path, "test_container_steps.py::test_container_gets_exactly_the_gpus_granted"))
    assert list(failed) == ["test_container_gets_exactly_the_gpus_granted[g1]"]
    assert "no GRES: the container can open 2 GPU devices" in failed["test_container_gets_exactly_the_gpus_granted[g1]"]


def test_cores_not_constrained_lets_a_containerised_task_see_every_cpu(running, pytester):
    """Nothing pins tasks (TaskPlugin=task/cgroup alone, ConstrainCores=no): a -c 1 task inside
    the container runs on every CPU of its node."""
    online = clusterkit.skip_unless_one_cpu_is_less_than_the_machine(2)
    engine, path = running
    check = "test_cpus_per_task_inside_container"
    with slurmfaults.cores_unconstrained(engine):
        failed = failures(run_checks(pytester, path, f"test_container_steps.py::{check}"))
    assert set(failed) == {f"{check}[g1]", f"{check}[c1]"}, sorted(failed)
    assert (f"c1: CPU confinement broken inside the container: -c 1 sees {online} CPUs"
            in failed[f"{check}[c1]"]), failed[f"{check}[c1]"]


def test_runtime_that_unsets_slurms_variables_leaves_every_task_task_0(running, pytester):
    """ch-run on g1 starts containers with --unset-env=SLURM_*: the tasks of a two-task step
    there cannot tell which they are; c1 is unaffected."""
    engine, path = running
    check = "test_per_task_variables_inside_container"
    with ctrfaults.runtime_unsets(engine, "g1", "SLURM_*"):
        results = run_checks(pytester, path, f"test_container_steps.py::{check}")
    failed = failures(results)
    assert list(failed) == [f"{check}[g1]"] and results[f"{check}[c1]"][0] == "passed", results
    assert "g1: tasks inside the container see SLURM_PROCID ['None', 'None'], expected 0..1" in failed[f"{check}[g1]"]


def test_runtime_that_unsets_pmix_variables_breaks_mpi_in_the_container(running, pytester):
    """ch-run on c1 starts containers with --unset-env=PMIX_*: the MPI rank there cannot reach
    Slurm's PMIx server, and the MPI-in-container check names what the ranks reported."""
    engine, path = running
    check = "test_mpi_in_container_spans_every_compute_node"
    with ctrfaults.runtime_unsets(engine, "c1", "PMIX_*"):
        failed = failures(run_checks(pytester, path, f"test_container_apps.py::{check}"))
    assert list(failed) == [check], failed
    assert f"MPI in {BODY['containers']['image']} on c1, g1: " in failed[check], failed[check]
    # Open MPI's own words from c1: its PMIx client finding no server ("OPAL ERROR: Unreachable"),
    # and, unless srun's --kill-on-bad-exit ends the step first (seen in CI), MPI_Init's banner
    assert "[c1:" in failed[check], failed[check]
    assert ("An error occurred in MPI_Init" in failed[check]
            or re.search(r"\[c1:\d+\] OPAL ERROR: Unreachable", failed[check])), failed[check]


def test_bundle_missing_on_one_node_fails_slurms_container_step_there(running, pytester):
    """The OCI bundle is gone from c1: ``srun --container`` fails there, naming node and bundle."""
    engine, path = running
    check = "test_slurm_container_step_runs_in_the_bundle"
    with ctrfaults.image_hidden(engine, "c1", BODY["containers"]["oci_bundle"]):
        results = run_checks(pytester, path, f"test_container_apps.py::{check}")
    failed = failures(results)
    assert list(failed) == [f"{check}[c1]"] and results[f"{check}[g1]"][0] == "passed", results
    assert f"c1: a step with --container={BODY['containers']['oci_bundle']} failed: " in failed[f"{check}[c1]"]
