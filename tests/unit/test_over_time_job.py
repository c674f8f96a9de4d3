"""The time-limit check's job is watched from its submission: its final record is kept though
slurmctld forgets a finished job ``MinJobAge`` after it ended and the check comes later."""

import time
from pathlib import Path

from pytest_hpcvalidate.transport import CommandResult
from suites.conftest import OverTimeJob

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "slurm"
TIMED_OUT = (FIXTURES / "scontrol-show-job-timeout-22.05.txt").read_text()
RUNNING = TIMED_OUT.replace("JobState=TIMEOUT Reason=TimeLimit", "JobState=RUNNING Reason=None")
GONE = "slurm_load_jobs error: Invalid job id specified"


class Controller:
    """Answers sbatch with job 347, then ``scontrol show job`` with each of ``reads`` in turn
    (the last one for ever after)."""

    name = "ctl"

    def __init__(self, reads: list[str]):
        self.reads, self.commands = reads, []

    def run(self, command: str, timeout: float = 30) -> CommandResult:
        self.commands.append(command)
        if command.startswith("sbatch"):
            return CommandResult(self.name, command, 0, "347\n", "", 0.01)
        if command.startswith("scancel"):
            return CommandResult(self.name, command, 0, "", "", 0.01)
        text = self.reads.pop(0) if len(self.reads) > 1 else self.reads[0]
        gone = text == GONE
        return CommandResult(self.name, command, 1 if gone else 0, "" if gone else text, text if gone else "", 0.01)


def test_the_final_record_is_kept_after_slurmctld_forgot_the_job(monkeypatch):
    monkeypatch.setattr(OverTimeJob, "POLL_S", 0.01)
    ctl = Controller([RUNNING, RUNNING, TIMED_OUT, GONE])
    job = OverTimeJob(ctl)
    assert job.get()[0] == 347
    time.sleep(0.3)  # the check comes late: slurmctld has long forgotten the job
    assert ctl.reads == [GONE]  # read up to the final record; what slurmctld would answer now
    started = job.wait(lambda info: info.state != "PENDING", timeout=1)
    assert job.started is not None and job.started.state == "RUNNING"
    final = job.wait(lambda info: info.final, timeout=1)
    assert final is not None and (final.state, final.raw["Reason"]) == ("TIMEOUT", "TimeLimit")
    assert started is final  # the watcher stopped at the final record
    polls = [c for c in ctl.commands if c.startswith("scontrol")]
    assert len(polls) == 3, polls  # it stopped reading once the job had ended
    job.cancel()


def test_a_job_never_read_gives_none_after_the_timeout(monkeypatch):
    monkeypatch.setattr(OverTimeJob, "POLL_S", 0.01)
    job = OverTimeJob(Controller([GONE]))
    job.get()
    assert job.wait(lambda info: True, timeout=0.2) is None and job.started is None
    job.cancel()
