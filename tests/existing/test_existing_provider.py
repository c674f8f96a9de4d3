"""The existing provider against a cluster the run did not create.

A local cluster is built with the engine directly (as an operator's Ansible would have built
it), then the shipped suites are pointed at it through ``provider: existing`` with the config
``--hpc-keep`` would hand off for it (nodes by address, the cluster's SSH key and known_hosts).
The module proves that they pass over SSH and leave the cluster as it was, that one
unreachable node fails only its own checks, that a changed host key and a wrong key file are
infrastructure errors naming the node, that mutating checks are refused unless allowed, that
``discover: slurm`` finds the nodes, and that on-node mode runs a node's checks without SSH.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import clusterkit
import pytest
from existingkit import PARTITIONS, existing_config

from pytest_hpcvalidate.probes import slurm

ROOT = Path(__file__).resolve().parents[2]
SUITES = ROOT / "suites"
pytestmark = [pytest.mark.integration, clusterkit.needs_local]

BODY = {
    "controller": {"name": "ctl", "cpus": 1, "memory_mb": 512},
    "compute": [{"names": "c[1-2]", "cpus": 2, "memory_mb": 1024}],
    "slurm": {"partitions": PARTITIONS},
}
INFRA = "infrastructure error (TransportError) "
DAEMONS = ("munged", "sshd", "slurmctld", "slurmd")


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    """(engine, its config) of a running local cluster this module built (the runs under test did not)."""
    with clusterkit.running_cluster("e", BODY, tmp_path_factory.mktemp("existing")) as made:
        yield made


@pytest.fixture(scope="module")
def made(kept):
    return kept[0]


@pytest.fixture(scope="module")
def config_of(kept):
    """``config_of(directory, **sections)``: the cluster's existing-provider config file."""
    engine, local_config = kept
    return lambda directory, **sections: existing_config(engine, local_config, directory, **sections)


def run_checks(pytester, config: Path, *selection: str, args: tuple[str, ...] = ()) -> dict[str, tuple[str, str]]:
    """Run suite checks (``file.py::test`` relative to suites/, or paths) in a separate session;
    {test id: (outcome, message)} of every test that ran (setup errors count as failed)."""
    targets = [s if s.startswith("/") else str(SUITES / s) for s in selection]
    result = pytester.runpytest("--hpc-config", str(config), "-p", "no:cacheprovider",
                                "--hpc-report-dir", str(pytester.path / "reports"), *args, *targets)
    out = {}
    for rep in result.reprec.getreports("pytest_runtest_logreport"):
        if rep.when == "call" or rep.outcome != "passed":
            test_id = rep.nodeid.split("::", 1)[1]
            message = rep.longreprtext if rep.outcome == "failed" else str(rep.longrepr or "")
            out.setdefault(test_id, (rep.outcome, message))
    return out


def outcomes(results: dict, outcome: str) -> dict[str, str]:
    return {k: msg for k, (o, msg) in results.items() if o == outcome}


# ----------------------------------------------------------------------------- the snapshot
def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def snapshot(engine) -> dict:
    """What an operator would compare: configs and keys, daemon PIDs, Slurm node states and
    jobs, and the file trees a run could write to (shared dir, every node's /tmp)."""
    sshp = engine.ssh_paths
    nodes = [n.name for n in engine.spec.nodes]
    files = [*engine.conf_dir.rglob("*"), engine.work_dir / "munge" / "munge.key", sshp.sshd_config,
             sshp.authorized_keys, sshp.known_hosts, sshp.host_key,
             *(engine.node_paths(n).munge_key for n in nodes)]
    ctl = engine.cluster.controller
    return {
        "hashes": {str(f): _sha(f) for f in files if f.is_file()},
        "pids": {f"{n}/{d}": engine.daemon_pids(n, d) for n in nodes for d in DAEMONS},
        "states": {name: sn.state_text for name, sn in slurm.show_nodes(ctl).items()},
        "jobs": ctl.run("squeue -h -o '%i %j %T'", timeout=30).check().stdout.split(),
        "shared": _tree(Path(engine.spec.shared_dir)),
        "tmp": {n: _tree(engine.node_paths(n).tmp) for n in nodes},
    }


def settled_snapshot(engine, want: dict, timeout: float = 15.0) -> dict:
    """The snapshot once Slurm has settled (a cancelled job's node leaves COMPLETING)."""
    deadline = time.monotonic() + timeout
    while True:
        snap = snapshot(engine)
        if snap == want or time.monotonic() > deadline:
            return snap
        time.sleep(0.3)


# a check file of the operator's own, run beside the suites: the run's job carries the run's
# name and partition (and is left pending for teardown to cancel); writes go to the scratch dir
PROBES = '''
import pytest

pytestmark = pytest.mark.area("slurm")

def test_job_is_named_for_the_run_and_left_for_teardown(controller, cluster):
    from pytest_hpcvalidate.probes import slurm
    job_id, r = slurm.sbatch(controller, "-N1 -o /dev/null --begin=now+3600", "true")
    assert job_id is not None, r.describe()
    seen = controller.run(f"squeue -h -j {job_id} -o '%j %P %T'").check().stdout.split()
    assert seen == ["hpcv-" + controller.facts["run_id"], "all", "PENDING"], seen

def test_scratch_dir_is_the_runs_own(cluster):
    node = cluster.compute[0]
    assert cluster.shared_dir.name == "hpcv-" + node.facts["run_id"]
    node.run(f"echo hi > {cluster.shared_dir}/probe").check()
    assert cluster.compute[1].run(f"cat {cluster.shared_dir}/probe").check().stdout == "hi\\n"

@pytest.mark.mutates("drains c1 and resumes it")
def test_drain_and_resume(controller):
    for state in ("drain reason=hpcv-mutation-test", "resume"):
        controller.run(f"scontrol update nodename=c1 state={state}").check()

@pytest.mark.requires("fault-injection")
def test_fault_injection_is_refused():
    raise AssertionError("must not run on an existing cluster")
'''


def test_suites_pass_over_ssh_and_leave_the_cluster_as_it_was(made, config_of, pytester):
    before = snapshot(made)
    assert before["jobs"] == [] and set(before["states"].values()) == {"IDLE"}
    probes = pytester.makepyfile(test_operator_probes=PROBES)
    results = run_checks(pytester, config_of(pytester.path), "l1_network", "l2_slurm", "l3_gres", "l3_cgroup", "l4_mpi",
                         str(probes))
    assert outcomes(results, "failed") == {}
    assert len(outcomes(results, "passed")) >= 30
    skipped = outcomes(results, "skipped")
    refused = "drains c1 and resumes it: changes the cluster; pass --hpc-allow-mutation"
    assert refused in skipped["test_drain_and_resume"]
    assert "fault injection exists only on the local provider" in skipped["test_fault_injection_is_refused"]
    after = settled_snapshot(made, before)
    assert after == before  # the pending job was cancelled, the scratch dir removed, nothing else touched


def _wait_port(address: str, port: int = 22, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((address, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_node_without_sshd_fails_only_its_own_checks(made, config_of, pytester):
    c2 = made.spec.nodes[2]
    made.stop_daemon(c2.name, "sshd")
    try:
        results = run_checks(
            pytester, config_of(pytester.path),
            "l1_network/test_reachability.py::test_hostname_and_address_match_config",
            "l2_slurm/test_registration.py::test_node_registered_and_usable",
            "l2_slurm/test_registration.py::test_slurm_ports_reachable",
            "l2_slurm/test_registration.py::test_a_job_step_runs_on_every_node_of_each_partition",
        )
    finally:
        made.start_daemon(c2.name, "sshd")
        _wait_port(c2.address)
    failed = outcomes(results, "failed")
    assert set(failed) == {"test_hostname_and_address_match_config[c2]", "test_slurm_ports_reachable[c2]"}
    for message in failed.values():
        assert message.startswith(f"{INFRA}c2: unreachable since the run started: cannot connect to {c2.address}:22")
        assert "Connection refused" in message and "Traceback" not in message and "\n" not in message.strip()
    # every other check ran and passed: layer 2 is not blocked by c2's infrastructure errors
    assert set(outcomes(results, "passed")) == {
        "test_hostname_and_address_match_config[ctl]", "test_hostname_and_address_match_config[c1]",
        "test_node_registered_and_usable[c1]", "test_node_registered_and_usable[c2]",
        "test_slurm_ports_reachable[c1]", "test_a_job_step_runs_on_every_node_of_each_partition"}


def _fingerprint(pub: Path) -> str:
    return subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True).stdout.split()[1]


def test_changed_host_key_and_wrong_key_file_name_the_node(made, config_of, pytester, tmp_path):
    sshp = made.ssh_paths
    c1, c2 = made.spec.nodes[1], made.spec.nodes[2]
    for name in ("impostor", "stranger"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)], check=True)
    impostor = " ".join((tmp_path / "impostor.pub").read_text().split()[:2])
    known = [line if not line.startswith(f"{c1.name},") else f"{c1.name},{c1.address} {impostor}"
             for line in sshp.known_hosts.read_text().splitlines()]
    (tmp_path / "known_hosts").write_text("\n".join(known) + "\n")
    config = config_of(pytester.path, ssh={"known_hosts": str(tmp_path / "known_hosts")},
                             existing={"nodes": {c2.name: {"key_file": str(tmp_path / "stranger")}}})
    results = run_checks(pytester, config, "l1_network/test_reachability.py::test_hostname_and_address_match_config")
    failed = outcomes(results, "failed")
    assert set(failed) == {"test_hostname_and_address_match_config[c1]", "test_hostname_and_address_match_config[c2]"}
    host_key = failed["test_hostname_and_address_match_config[c1]"]
    assert host_key.startswith(f"{INFRA}c1: unreachable since the run started: HOST KEY MISMATCH for {c1.address}")
    assert _fingerprint(sshp.host_key.with_suffix(".pub")) in host_key  # what c1 presented
    assert _fingerprint(tmp_path / "impostor.pub") in host_key  # what known_hosts expects
    auth = failed["test_hostname_and_address_match_config[c2]"]
    assert auth.startswith(f"{INFRA}c2: unreachable since the run started: "
                           f"authentication as root@{c2.address}:22 failed")
    assert str(tmp_path / "stranger") in auth
    assert "Traceback" not in host_key + auth
    assert outcomes(results, "passed") == {"test_hostname_and_address_match_config[ctl]": ""}
    assert (tmp_path / "known_hosts").read_text().count(impostor) == 1  # nothing was added or replaced


def test_discover_slurm_finds_the_nodes_and_allowed_mutation_runs(made, config_of, pytester):
    """discover: slurm reads c2 (the config names only c1) and asserts only what the config
    states (c1's CPUs, wrong on purpose); in the same session, --hpc-allow-mutation lets the
    mutating check run."""
    c1 = made.spec.nodes[1]
    config = config_of(pytester.path, compute=[{"names": c1.name, "cpus": 4}],
                             existing={"discover": "slurm"})
    probes = pytester.makepyfile(test_operator_probes=PROBES)
    results = run_checks(pytester, config, "l2_slurm/test_registration.py::test_node_registered_and_usable",
                         "l2_slurm/test_registration.py::test_node_resources_match_config",
                         f"{probes}::test_drain_and_resume", args=("--hpc-allow-mutation",))
    assert set(outcomes(results, "passed")) == {
        "test_node_registered_and_usable[c1]", "test_node_registered_and_usable[c2]",
        "test_node_resources_match_config[c2]", "test_drain_and_resume"}
    failed = outcomes(results, "failed")
    assert list(failed) == ["test_node_resources_match_config[c1]"]
    assert "c1 in Slurm: CPUs 2, config says 4" in failed["test_node_resources_match_config[c1]"]


def test_on_node_mode_runs_the_nodes_checks_without_ssh(made, config_of):
    """pytest started inside c1 (as a node health checker would be) with c1 on ``transport:
    local``; c1's sshd is stopped, so only the local transport can make its check pass."""
    c1 = made.spec.nodes[1]
    work = Path(made.spec.shared_dir) / "on-node-test"  # a path the node sees
    work.mkdir()
    config = config_of(work, existing={"nodes": {c1.name: {"transport": "local"}}})
    made.stop_daemon(c1.name, "sshd")
    try:
        proc = subprocess.run(
            # the node's network and hostname; the host's filesystem, so this checkout's
            # interpreter is there wherever it lives (a node's /tmp is its own: a clone under
            # /tmp is invisible inside the node's mount namespace)
            ["nsenter", "-t", str(made.anchors[c1.name].pid), "-n", "-u", "--",
             sys.executable, "-m", "pytest", "-q",
             "-p", "no:cacheprovider", "--hpc-config", str(config), "--hpc-report-dir", str(work / "reports"),
             "-o", "addopts=", str(SUITES / "l1_network/test_reachability.py::test_hostname_and_address_match_config")],
            cwd=ROOT, capture_output=True, text=True, timeout=120)
    finally:
        made.start_daemon(c1.name, "sshd")
        _wait_port(c1.address)
        shutil.rmtree(work)
    assert "3 passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]


PLAIN_USER = "hpcv-probe"
MUNGE_CHECK = "l2_slurm/test_registration.py::test_munge_key_is_private_to_munged"
CTLD_CHECK = "l2_slurm/test_registration.py::test_slurmctld_answers"


def _drop_user() -> None:
    """Remove the test user, ending its sessions first (sshd's per-session processes outlive
    the client's disconnect by a moment, and userdel refuses a user with processes)."""
    subprocess.run(["pkill", "-KILL", "-u", PLAIN_USER], capture_output=True)
    subprocess.run(["userdel", "--force", PLAIN_USER], capture_output=True)
    probe = subprocess.run(["id", PLAIN_USER], capture_output=True)
    assert probe.returncode != 0, f"user {PLAIN_USER} could not be removed"


@contextlib.contextmanager
def plain_login_user(engine, sudo_rule: bool = False):
    """A non-root user on this machine (the nodes share its /etc), able to log in with the
    cluster's key (the nodes' sshd reads one AuthorizedKeysFile for every user, as that user:
    its directory is opened for traversal meanwhile); with ``sudo_rule`` it may run anything
    through ``sudo -n``. Removed afterwards."""
    rule = Path("/etc/sudoers.d") / PLAIN_USER
    ssh_dir = engine.ssh_paths.authorized_keys.parent
    mode = ssh_dir.stat().st_mode & 0o7777
    ssh_dir.chmod(mode | 0o011)
    _drop_user()
    # password "*": no password login, but not locked ("!"), which sshd without PAM refuses
    subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/", "--shell", "/bin/sh",
                    "--password", "*", PLAIN_USER], check=True, capture_output=True)
    try:
        if sudo_rule:
            rule.write_text(f"{PLAIN_USER} ALL=(ALL) NOPASSWD: ALL\n")
            rule.chmod(0o440)
        yield PLAIN_USER
    finally:
        rule.unlink(missing_ok=True)
        _drop_user()
        ssh_dir.chmod(mode)


@pytest.mark.skipif(shutil.which("sudo") is None, reason="needs sudo (setup.sh installs it)")
def test_checks_that_need_root_skip_for_a_plain_user_and_use_sudo_only_when_allowed(made, config_of, pytester):
    plain = {"scratch_dir": "/tmp", "scratch_shared": False}
    with plain_login_user(made) as user:
        config = config_of(pytester.path, ssh={"user": user}, existing=plain)
        results = run_checks(pytester, config, MUNGE_CHECK, CTLD_CHECK)
        assert outcomes(results, "passed").keys() == {"test_slurmctld_answers"}, results  # jobs/queries as the user
        skipped = outcomes(results, "skipped")
        assert set(skipped) == {f"test_munge_key_is_private_to_munged[{n}]" for n in ("ctl", "c1", "c2")}, results
        assert all(f"requires root: the run is not root on ctl, c1, c2 (user {user}); set existing.sudo: true"
                   in why for why in skipped.values()), skipped
        strict = run_checks(pytester, config, MUNGE_CHECK, args=("--hpc-strict",))
        assert set(outcomes(strict, "failed")) == set(skipped), strict

        # sudo allowed by the config, but the node's sudoers does not allow the user: the check fails, saying so
        config = config_of(pytester.path, ssh={"user": user}, existing={**plain, "sudo": True})
        refused = outcomes(run_checks(pytester, config, MUNGE_CHECK), "failed")
        assert set(refused) == set(skipped), refused
        assert all(re.search(r"munge on \w+: cannot stat key file \S+munge.key: sudo: a password is required", m)
                   for m in refused.values()), refused
    with plain_login_user(made, sudo_rule=True):
        results = run_checks(pytester, config, MUNGE_CHECK, CTLD_CHECK)
        assert set(outcomes(results, "passed")) == {*skipped, "test_slurmctld_answers"}, results


USERS_JOB_CHECK = "l2_slurm/test_users.py::test_a_users_job_runs_as_them_on_every_compute_node"


@pytest.mark.skipif(shutil.which("sudo") is None, reason="needs sudo (setup.sh installs it)")
def test_a_job_as_another_user_goes_through_sudo_only_where_sudoers_allows_it(made, config_of, pytester):
    """Logged in as a plain user, the user check submits root's job with ``sudo -n -u root``:
    skipped, naming why, where sudoers refuses; run, under the run's job policy, where it allows."""
    plain = {"scratch_dir": "/tmp", "scratch_shared": False}
    with plain_login_user(made) as user:
        config = config_of(pytester.path, ssh={"user": user}, existing=plain, slurm={"users": ["root"]})
        skipped = outcomes(run_checks(pytester, config, USERS_JOB_CHECK), "skipped")
        assert list(skipped) == ["test_a_users_job_runs_as_them_on_every_compute_node"], skipped
        assert ("cannot submit a job as root from ctl: the login user is not root, and sudo -n -u root is refused "
                "(sudo: a password is required)") in next(iter(skipped.values())), skipped
    with plain_login_user(made, sudo_rule=True):
        results = run_checks(pytester, config, USERS_JOB_CHECK)
        assert set(outcomes(results, "passed")) == {"test_a_users_job_runs_as_them_on_every_compute_node"}, results
