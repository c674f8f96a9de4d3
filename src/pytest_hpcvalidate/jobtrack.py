"""The jobs a run submits to a cluster it did not create: recognisable, placed, cancelled.

On an existing cluster every job of the run must carry the run's name (``hpcv-<run id>``),
go to the partition/account/QOS the config names, and be cancelled at teardown if it is
still there. Rather than threading options through every probe, the run's commands get
Slurm's *input environment variables* (``SLURM_JOB_NAME`` for srun, ``SBATCH_*`` for
sbatch, ``SALLOC_*`` for salloc): they act as defaults, so a check that passes ``-p`` itself
still chooses its partition, and every job gets the run's name whatever probe submitted it.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import shlex
import time
from dataclasses import dataclass

from .transport import CommandResult, Transport

#: every job of a run is named ``<JOB_PREFIX><run id>``
JOB_PREFIX = "hpcv-"
_CLIENTS = ("SLURM", "SBATCH", "SALLOC")  # srun, sbatch, salloc read <CLIENT>_<OPTION>


def new_run_id() -> str:
    """Short, unique enough among concurrent runs, sortable by start time: ``1123T1530-a1b2c3``."""
    return time.strftime("%m%dT%H%M") + "-" + secrets.token_hex(3)


@dataclass(frozen=True)
class JobPolicy:
    """Where the run's jobs go and what they are called."""

    run_id: str
    partition: str | None = None
    account: str | None = None
    qos: str | None = None

    @property
    def job_name(self) -> str:
        return JOB_PREFIX + self.run_id

    def environment(self) -> dict[str, str]:
        """The Slurm client input variables that carry this policy."""
        options = {"JOB_NAME": self.job_name, "PARTITION": self.partition, "ACCOUNT": self.account, "QOS": self.qos}
        return {f"{client}_{opt}": value for opt, value in options.items() if value for client in _CLIENTS}

    def wrap(self, command: str) -> str:
        """``command`` preceded by the exports (a line of its own, so here-documents keep working)."""
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.environment().items()))
        return f"export {exports}\n{command}"


class JobPolicyTransport(Transport):
    """A node's transport whose commands submit jobs under the run's :class:`JobPolicy`.

    Results report the command as the check wrote it, not the exports in front of it.
    """

    def __init__(self, inner: Transport, policy: JobPolicy):
        self.inner = inner
        self.policy = policy
        self.node = inner.node

    def run(self, command: str, timeout: float | None = 60.0) -> CommandResult:
        result = self.inner.run(self.policy.wrap(command), timeout=timeout)
        return dataclasses.replace(result, command=command)

    def close(self) -> None:
        self.inner.close()

    def __repr__(self) -> str:
        return f"JobPolicyTransport({self.inner!r}, {self.policy.job_name})"


_JOB_ID = re.compile(r"^\d+(?:_\d+)?$")


def jobs_of_run(controller, policy: JobPolicy) -> list[str]:
    """Ids of the run's jobs slurmctld still knows as pending or running."""
    r = controller.run(f"squeue -h -t PD,CF,R,S -n {shlex.quote(policy.job_name)} -o %i", timeout=30)
    return [j for j in r.stdout.split() if _JOB_ID.match(j)] if r.ok else []


def cancel_leftovers(controller, policy: JobPolicy) -> list[str]:
    """``scancel`` the run's jobs that are still there; returns their ids (empty: none left).

    Only jobs with this run's name are touched: other users' and other runs' jobs never are.
    """
    left = jobs_of_run(controller, policy)
    if left:
        controller.run(f"scancel -n {shlex.quote(policy.job_name)} " + " ".join(left), timeout=30)
    return left
