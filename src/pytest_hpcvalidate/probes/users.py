"""Users as the nodes see them: ``getent passwd`` (files, LDAP, SSSD alike), and commands run
as a given user.

Slurm hands a job's numeric uid and gid, and the user's name, from the submitting host to every
node, and slurmd starts the job under that uid even where the node does not know it (seen with
Slurm 22.05): on a node whose directory service is down or out of date the job runs under a uid
nothing there can name (id, ssh, mpirun and home lookups fail), and where the node maps the
name to another uid, what the user writes on shared storage belongs to someone else.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from ..transport import CommandResult


@dataclass(frozen=True)
class Account:
    """One ``getent passwd`` entry: what decides who a job runs as and where."""

    name: str
    uid: int
    gid: int
    home: str

    def describe(self) -> str:
        return f"uid {self.uid} gid {self.gid} home {self.home}"


def parse_passwd(text: str) -> dict[str, Account]:
    """``name:x:uid:gid:gecos:home:shell`` lines → {name: Account} (malformed lines skipped)."""
    out: dict[str, Account] = {}
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 7 and parts[2].isdigit() and parts[3].isdigit():
            out.setdefault(parts[0], Account(parts[0], int(parts[2]), int(parts[3]), parts[5]))
    return out


def lookup(node, names: list[str]) -> tuple[dict[str, Account], CommandResult]:
    """The entries ``getent passwd`` gives on ``node`` for ``names`` (a name it does not know
    is left out; getent then exits 2, which is no error here)."""
    r = node.run("getent passwd " + " ".join(shlex.quote(n) for n in names), timeout=30)
    return (parse_passwd(r.stdout) if r.exit_code in (0, 2) and not r.timed_out else {}), r


def slurm_user(config: dict[str, str]) -> str | None:
    """The user slurmctld runs as, from ``scontrol show config`` (``SlurmUser = slurm(64030)``)."""
    value = config.get("SlurmUser", "").split("(")[0].strip()
    return value or None


def compare(name: str, here: Account | None, reference: Account | None, node: str, ref_node: str) -> str | None:
    """What is wrong with ``name`` on ``node`` against ``ref_node``'s entry, or None."""
    if reference is None:
        return f"user {name} unknown on {ref_node} (getent passwd): nothing can submit jobs as them"
    if here is None:
        return (f"user {name} unknown on {node} (getent passwd), {reference.describe()} on {ref_node}: their "
                f"jobs there run under a uid the node cannot name (is the node's directory service, e.g. sssd, "
                f"running?)")
    if (here.uid, here.gid, here.home) != (reference.uid, reference.gid, reference.home):
        return (f"user {name} is {here.describe()} on {node} but {reference.describe()} on {ref_node}: their "
                f"jobs run under {ref_node}'s ids there and their files on shared storage belong to someone "
                f"else: make every node use the same directory service or passwd entry")
    return None


#: the exported Slurm client input variables (the run's job name, partition, account, QOS on an
#: existing cluster: jobtrack.JobPolicy) as ``export`` lines, which sudo's env_reset would drop
_SLURM_EXPORTS = ("$(export -p | sed -n -E -e 's/^declare -x /export /' "
                  "-e '/^export (SLURM|SBATCH|SALLOC)_[A-Z_]+=/p')")


def as_user(user: str, command: str) -> str:
    """A shell command that runs ``command`` as ``user``: ``runuser`` where the login user is
    root, directly where it is ``user``, else ``sudo -n -u`` (which fails without a password
    prompt where sudo does not allow it). The Slurm input variables exported go along."""
    u, c = shlex.quote(user), shlex.quote(command)
    return (f'if [ "$(id -u)" = 0 ]; then runuser -u {u} -- /bin/sh -c {c}; '
            f'elif [ "$(id -un)" = {u} ]; then /bin/sh -c {c}; '
            f'else sudo -n -u {u} /bin/sh -c "{_SLURM_EXPORTS}\n"{c}; fi')


def sudo_refused(result: CommandResult) -> bool:
    """``sudo -n`` would have asked for a password, or does not allow the command."""
    return result.exit_code == 1 and "sudo:" in result.stderr and (
        "password is required" in result.stderr or "not allowed" in result.stderr)
