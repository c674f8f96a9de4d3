"""Login nodes: the checks of a node users submit from go red when it is broken, naming it.

One real local cluster (controller, 2 compute nodes, a login node: munged and sshd, no slurmd)
serves the module. Each test breaks one thing on the login node with
``pytest_hpcvalidate.faults``, runs the shipped checks through the plugin against the running
cluster (``--hpc-reuse``), asserts which tests fail and what they say, and repairs the fault.
The first test proves the healthy cluster passes them, so each red result is the fault's doing.
"""

from __future__ import annotations

import re
import subprocess

import clusterkit
import pytest
import yaml

from pytest_hpcvalidate.faults import network as netfaults
from pytest_hpcvalidate.faults import nodes as nodefaults
from pytest_hpcvalidate.faults import slurm as slurmfaults

SUITES = clusterkit.SUITES
pytestmark = [pytest.mark.integration, clusterkit.needs_local]

BODY = {
    "controller": {"name": "ctl", "cpus": 1, "memory_mb": 512},
    "compute": [{"names": "c[1-2]", "cpus": 2, "memory_mb": 512}],
    "login": [{"name": "login1"}],
    "slurm": {"partitions": [{"name": "all", "nodes": "ALL", "default": True}]},
    # a job from a login node the compute nodes cannot reach back hangs until this: keep it short
    "thresholds": {"job_start_s_max": 10, "latency_p50_ms_max": 10, "latency_p99_ms_max": 50},
}

#: the checks a login node takes part in, beyond the network's
LOGIN_CHECKS = ("l2_slurm/test_login_nodes.py",
                "l2_slurm/test_registration.py::test_munge_credential_from_node_decodes_on_controller",
                "l2_slurm/test_registration.py::test_munge_credential_from_controller_decodes_on_node",
                "l2_slurm/test_registration.py::test_slurm_conf_is_the_controllers",
                "l2_slurm/test_registration.py::test_a_job_step_runs_on_every_node_of_each_partition",
                "l2_slurm/test_registration.py::test_slurm_ports_reachable",
                "l1_network/test_reachability.py::test_clock_agrees_with_the_controller",
                "l1_nodes/test_image.py::test_login_node_runs_the_compute_nodes_mpi_slurm_and_munge")
IMAGE_CHECK = "test_login_node_runs_the_compute_nodes_mpi_slurm_and_munge[login1]"


broken = clusterkit.module_cluster("lo", BODY, "broken")
run_checks, failures = clusterkit.run_checks, clusterkit.failures


def test_healthy_login_node_passes_every_check(broken, pytester):
    _, path = broken
    results = run_checks(pytester, path, "l1_network/test_reachability.py", *LOGIN_CHECKS,
                         "l2_slurm/test_registration.py::test_prolog_and_epilog_scripts_are_in_place",
                         "l2_slurm/test_registration.py::test_slurm_state_directory_has_room")
    assert not failures(results), failures(results)
    for check in ("test_compute_nodes_can_connect_back_to_srun_on_the_login_node[login1]",
                  "test_jobs_submitted_from_the_login_node_run[login1]", "test_slurm_conf_is_the_controllers[login1]",
                  "test_munge_credential_from_node_decodes_on_controller[login1]",
                  "test_clock_agrees_with_the_controller[login1]", "test_node_reaches_every_other_node[login1]",
                  "test_slurm_ports_reachable[login1]", IMAGE_CHECK):
        assert results[check][0] == "passed", (check, results[check])
    environment = (pytester.path / "reports" / "allure-results" / "environment.properties").read_text()
    assert "compute_nodes=2\n" in environment and "login_nodes=1\n" in environment, environment
    # a login node runs no slurmd: the checks of what slurmd keeps or runs do not apply there
    for check in ("test_prolog_and_epilog_scripts_are_in_place[login1]", "test_slurm_state_directory_has_room[login1]"):
        assert results[check][0] == "skipped", (check, results[check])


def test_login_node_firewall_that_lets_only_ssh_in(broken, pytester):
    """The compute nodes cannot connect back to the login node: jobs submitted there hang,
    the same job from the controller runs."""
    engine, path = broken
    with netfaults.only_ssh_in(engine, "login1"):
        results = run_checks(pytester, path, *LOGIN_CHECKS)
    failed = failures(results)
    assert set(failed) == {"test_compute_nodes_can_connect_back_to_srun_on_the_login_node[login1]",
                           "test_jobs_submitted_from_the_login_node_run[login1]"}, sorted(failed)
    message = failed["test_compute_nodes_can_connect_back_to_srun_on_the_login_node[login1]"]
    assert re.search(r"c\[1-2\] cannot connect to srun's port \d+ on login node login1 \(no SrunPortRange: srun "
                     r"listens on any port \(\d+-\d+\)\): c1: Connection refused; c2: Connection refused\. Jobs started with srun "
                     r"on login1 hang or fail there while the same job from the controller runs", message), message
    assert "open " in message and "/tcp on login1 to the compute nodes, or set SrunPortRange" in message, message
    assert "srun -p all -N2 from login node login1 failed" in \
        failed["test_jobs_submitted_from_the_login_node_run[login1]"]


def test_login_node_left_out_of_an_mpi_and_slurm_update(broken, pytester):
    """dpkg on login1 says its Open MPI and Slurm clients are at other versions than the
    compute nodes': only the image check goes red, naming both packages and the compute
    nodes' versions (jobs still run: what breaks is what users build there)."""
    engine, path = broken
    theirs = dict(line.split("\t") for line in subprocess.run(
        ["dpkg-query", "-W", "-f=${Package}\t${Version}\n", "openmpi-bin", "slurm-client"],
        capture_output=True, text=True, check=True).stdout.splitlines())
    with nodefaults.packages_differ(engine, "login1", {"openmpi-bin": "4.1.4-99", "slurm-client": "22.05.99-1"}):
        failed = failures(run_checks(pytester, path, *LOGIN_CHECKS))
    assert list(failed) == [IMAGE_CHECK], sorted(failed)
    message = failed[IMAGE_CHECK]
    assert ("login node login1 has other versions than the compute nodes of 2 of the" in message
            and f"openmpi-bin 4.1.4-99 ({theirs['openmpi-bin']} on c[1-2])" in message
            and f"slurm-client 22.05.99-1 ({theirs['slurm-client']} on c[1-2])" in message
            and "update login1 with the compute nodes' image" in message), message


def test_login_node_that_cannot_reach_slurmctld(broken, pytester):
    """login1's own firewall refuses its connections to port 6817: nothing submitted there
    reaches slurmctld, and the ports check names that path."""
    engine, path = broken
    with netfaults.port_unreachable_from(engine, "login1", 6817):
        results = run_checks(pytester, path, *LOGIN_CHECKS)
    failed = failures(results)
    assert set(failed) == {"test_slurm_ports_reachable[login1]", "test_jobs_submitted_from_the_login_node_run[login1]"}, \
        sorted(failed)
    assert "Slurm ports blocked: login1 -> ctl:6817 (slurmctld): " in failed["test_slurm_ports_reachable[login1]"]


def test_login_node_with_a_slurm_conf_of_its_own(broken, pytester):
    engine, path = broken
    with slurmfaults.stale_slurm_conf(engine, "login1"):
        results = run_checks(pytester, path, "l2_slurm/test_registration.py::test_slurm_conf_is_the_controllers")
    failed = failures(results)
    assert list(failed) == ["test_slurm_conf_is_the_controllers[login1]"]
    message = failed["test_slurm_conf_is_the_controllers[login1]"]
    # no slurmd to restart there: the message ends at copying the file
    assert re.search(r"AssertionError: login1: \S+ \(sha256 \w+…\) differs from ctl's \S+ \(sha256 \w+…\): copy the "
                     r"controller's to the node \(or run configless\)$", message, re.M), message


def test_login_node_whose_munge_key_differs(broken, pytester):
    """Credentials made on the login node do not decode on the controller: nothing submitted
    there is accepted."""
    engine, path = broken
    with slurmfaults.munge_key_differs(engine, "login1"):
        results = run_checks(pytester, path, *LOGIN_CHECKS)
    failed = failures(results)
    assert set(failed) == {"test_munge_credential_from_node_decodes_on_controller[login1]",
                           "test_munge_credential_from_controller_decodes_on_node[login1]",
                           "test_jobs_submitted_from_the_login_node_run[login1]"}, sorted(failed)
    assert "made on login1 does not decode on ctl" in failed["test_munge_credential_from_node_decodes_on_controller[login1]"]


def test_the_kept_config_reaches_the_login_node_over_ssh(broken, pytester, tmp_path):
    """The ``--hpc-keep`` handoff carries the login node's address: through the existing
    provider, over SSH, the login node's checks pass and a firewall on it turns them red."""
    from pytest_hpcvalidate.config import load_config
    from pytest_hpcvalidate.providers.handoff import kept_cluster_doc

    engine, path = broken
    doc = kept_cluster_doc(load_config(str(path)), engine.cluster)
    assert doc["login"] == [{"name": "login1", "address": engine.cluster.node("login1").address}]
    existing = tmp_path / "existing.yaml"
    existing.write_text(yaml.safe_dump(doc, sort_keys=False))

    def over_ssh() -> dict[str, str]:
        result = pytester.runpytest("--hpc-config", str(existing), "-p", "no:cacheprovider", "--hpc-report-dir",
                                    str(pytester.path / "reports"), str(SUITES / "l2_slurm/test_login_nodes.py"))
        reports = [r for r in result.reprec.getreports("pytest_runtest_logreport") if r.when == "call"]
        assert len(reports) == 2, result.stdout.str()[-2000:]
        return {r.nodeid.split("::", 1)[1]: r.longreprtext for r in reports if r.outcome == "failed"}

    assert over_ssh() == {}
    with netfaults.only_ssh_in(engine, "login1"):
        failed = over_ssh()
    assert set(failed) == {"test_compute_nodes_can_connect_back_to_srun_on_the_login_node[login1]",
                           "test_jobs_submitted_from_the_login_node_run[login1]"}, sorted(failed)
