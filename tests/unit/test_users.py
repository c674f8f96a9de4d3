"""Users as nodes see them (probes/users.py) and the local nodes' own passwd (providers/local/accounts.py)."""

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_hpcvalidate.probes import users
from pytest_hpcvalidate.providers.local import accounts

HOST_PASSWD = "root:x:0:0:root:/root:/bin/bash\nmunge:x:101:102::/nonexistent:/usr/sbin/nologin\nbob:x:20000:20000::/home/bob:/bin/sh\n"
HOST_GROUP = "root:x:0:\nmunge:x:102:\nbob:x:20000:\nstaff:x:20001:\n"


def test_getent_lines_parsed_and_malformed_ones_skipped():
    found = users.parse_passwd(HOST_PASSWD + "broken line\nx:x:notanumber:0::/:/bin/sh\n")
    assert sorted(found) == ["bob", "munge", "root"]
    assert found["bob"] == users.Account("bob", 20000, 20000, "/home/bob")


def test_slurm_user_from_the_running_config():
    assert users.slurm_user({"SlurmUser": "slurm(64030)"}) == "slurm"
    assert users.slurm_user({"SlurmUser": "root(0)"}) == "root"
    assert users.slurm_user({}) is None


def test_compare_names_node_ids_and_the_fix():
    ref = users.Account("alice", 20000, 20000, "/home/alice")
    assert users.compare("alice", ref, ref, "c1", "ctl") is None
    other = users.compare("alice", users.Account("alice", 20001, 20000, "/home/alice"), ref, "c1", "ctl")
    assert "alice is uid 20001 gid 20000 home /home/alice on c1 but uid 20000 gid 20000 home /home/alice on ctl" in other
    missing = users.compare("alice", None, ref, "c1", "ctl")
    assert missing.startswith("user alice unknown on c1 (getent passwd)") and "sssd" in missing
    assert "unknown on ctl" in users.compare("alice", ref, None, "c1", "ctl")


def test_nodes_passwd_adds_only_missing_users_with_free_ids(tmp_path):
    passwd, group, made = accounts.render(HOST_PASSWD, HOST_GROUP, ["hpcv", "bob", "hpcv", "eve"], tmp_path)
    assert [(u.name, u.uid) for u in made] == [("hpcv", 20002), ("eve", 20003)]  # 20000/20001 taken
    entries = users.parse_passwd(passwd)
    assert entries["hpcv"] == users.Account("hpcv", 20002, 20002, str(tmp_path / "hpcv"))
    assert entries["bob"].uid == 20000 and passwd.startswith(HOST_PASSWD)
    assert "hpcv:x:20002:\n" in group and "eve:x:20003:\n" in group and group.startswith(HOST_GROUP)


@given(st.lists(st.from_regex(r"[a-z_][a-z0-9_-]{0,8}", fullmatch=True), max_size=12))
def test_made_users_never_share_an_id_with_the_host_or_each_other(names):
    passwd, group, made = accounts.render(HOST_PASSWD, HOST_GROUP, names, Path("/home"))
    uids = [u.uid for u in users.parse_passwd(passwd).values()]
    assert len(uids) == len(set(uids)) == len(set(names) | {"root", "munge", "bob"})
    assert all(u.uid not in (0, 101, 102, 20000, 20001) for u in made)


@pytest.mark.skipif(os.geteuid() != 0, reason="runuser needs root")
def test_as_user_runs_the_command_as_that_user():
    out = subprocess.run(["/bin/sh", "-c", users.as_user("nobody", "id -un; echo \"it's $0\"")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.splitlines() == ["nobody", "it's /bin/sh"], out


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/sudo").exists(), reason="needs root and sudo")
def test_as_user_from_a_login_user_sudo_refuses_is_told_apart_from_a_failing_job():
    from pytest_hpcvalidate.transport import CommandResult

    cmd = users.as_user("root", "id -un")
    out = subprocess.run(["runuser", "-u", "nobody", "--", "/bin/sh", "-c", cmd], capture_output=True, text=True, timeout=30)
    refused = CommandResult("c1", cmd, out.returncode, out.stdout, out.stderr, 0.0)
    assert users.sudo_refused(refused), out
    failing = CommandResult("c1", cmd, 1, "", "srun: error: Unable to allocate resources", 0.0)
    assert not users.sudo_refused(failing)
    own = subprocess.run(["runuser", "-u", "nobody", "--", "/bin/sh", "-c", users.as_user("nobody", "id -un")],
                         capture_output=True, text=True, timeout=30)
    assert own.returncode == 0 and own.stdout.strip() == "nobody", own


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/sudo").exists(), reason="needs root and sudo")
def test_as_user_through_sudo_keeps_the_runs_slurm_variables(tmp_path):
    """sudo resets the environment: the run's job name and partition (jobtrack's exports) must
    reach the job anyway, and nothing else of the caller's environment."""
    rule = Path("/etc/sudoers.d/hpcv-test-as-user")
    rule.write_text("nobody ALL=(root) NOPASSWD: /bin/sh\n")
    rule.chmod(0o440)
    try:
        cmd = users.as_user("root", 'echo "$(id -un) $SLURM_JOB_NAME $SBATCH_PARTITION ${HPCV_OTHER:-unset}"')
        env = {"PATH": os.environ["PATH"], "SLURM_JOB_NAME": "hpcv-0101T0000-abc", "SBATCH_PARTITION": "all 'x'",
               "HPCV_OTHER": "kept?"}
        out = subprocess.run(["runuser", "-u", "nobody", "--", "/bin/sh", "-c", cmd], capture_output=True, text=True,
                             timeout=30, env=env)
    finally:
        rule.unlink()
    assert out.returncode == 0 and out.stdout.strip() == "root hpcv-0101T0000-abc all 'x' unset", out
