"""Layer 2, users: every node knows the cluster's users as the controller does, and a job of
theirs runs as them on every compute node.

Slurm sends a job's numeric uid and gid (and the user's name) from the submitting host, and
slurmd on each node starts the job under that uid. A node whose directory service (sssd, LDAP,
a copied passwd file) is down or out of date runs that user's jobs under a uid it cannot name,
or maps the name to someone else. The users checked: slurmctld's ``SlurmUser`` (slurmd takes
slurmctld's requests only from that uid) and every user in ``slurm.users``.
"""

from __future__ import annotations

import shlex

import pytest

from pytest_hpcvalidate.capabilities import not_applicable
from pytest_hpcvalidate.probes import slurm, users

from ..conftest import partition_node_names, srun_as


@pytest.fixture(scope="module")
def checked_users(controller, hpc_config) -> list[str]:
    config = slurm.show_config(controller)
    return list(dict.fromkeys([u for u in [users.slurm_user(config)] if u] + hpc_config.slurm.users))


@pytest.fixture(scope="module")
def controller_accounts(controller, checked_users) -> dict[str, users.Account]:
    found, r = users.lookup(controller, checked_users)
    assert r.exit_code in (0, 2), f"getent passwd failed on {controller.name}: {r.describe()}"
    return found


def test_users_resolve_alike_on_every_node(node, controller, checked_users, controller_accounts, each_node):
    def probe(n):
        return users.lookup(n, checked_users)

    found, r = each_node(probe)
    assert r.exit_code in (0, 2), f"getent passwd failed on {node.name}: {r.describe()}"
    problems = [p for name in checked_users
                if (p := users.compare(name, found.get(name), controller_accounts.get(name), node.name, controller.name))]
    assert not problems, "; ".join(problems)


#: what each task of the job prints: where it ran, who it ran as, whether its home is there
WHOAMI = ('home=missing; [ -d "$HOME" ] && [ -w "$HOME" ] && home=writable; '
          'echo "$(hostname) $(id -u) $(id -g) $(id -un) $home"')


def test_a_users_job_runs_as_them_on_every_compute_node(controller, hpc_config, node_spec, thresholds, controller_accounts):
    """``srun -N<all>`` submitted as each user of ``slurm.users``, in every partition: every
    task runs as that user's uid and gid, can write the user's home directory, and the node
    knows that uid by the user's name (Slurm sends the name with the job, so a node that lacks
    the user still starts it, under a uid nothing there can look up)."""
    if not hpc_config.slurm.users:
        not_applicable("the config names no users (slurm.users)")
    problems = []
    for user in hpc_config.slurm.users:
        account = controller_accounts.get(user)
        if account is None:
            problems.append(f"user {user} unknown on {controller.name} (getent passwd): cannot submit as them")
            continue
        for part, names in partition_node_names(hpc_config, node_spec):
            r = srun_as(controller, user, f"-p {shlex.quote(part)} -N{len(names)} --ntasks-per-node=1", WHOAMI,
                        thresholds.job_start_s_max)
            if not r.ok:
                problems.append(f"a job of {user} in partition {part} (srun -N{len(names)}) failed: {r.describe()}")
                continue
            ran = {}
            for line in r.stdout.splitlines():
                parts = line.split()
                if len(parts) == 5:
                    ran[parts[0]] = parts[1:]
            expected = [str(account.uid), str(account.gid), user, "writable"]
            for name in names:
                got = ran.get(name)
                if got is None:
                    problems.append(f"a job of {user} in partition {part} printed nothing from {name}")
                elif got[:2] != expected[:2]:
                    problems.append(f"a job of {user} on {name} ran as uid {got[0]} gid {got[1]}, expected uid "
                                    f"{account.uid} gid {account.gid} ({controller.name}'s)")
                elif got[2] != user:
                    known = "by no name" if got[2].isdigit() else f"as {got[2]}"
                    problems.append(f"a job of {user} on {name} ran as uid {got[0]}, which {name} knows {known}: "
                                    f"whatever looks the user up there (id, ssh, mpirun, the home directory) fails")
                elif got[3] != "writable":
                    problems.append(f"a job of {user} on {name} has no home directory it can write ({account.home} "
                                    f"is missing or not writable there): is the home file system mounted on {name}?")
    assert not problems, "; ".join(problems)
