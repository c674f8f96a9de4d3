"""A job watched from its submission keeps its final record though slurmctld forgets a
finished job ``MinJobAge`` after it ended and the check comes later (the time-limit check's
job: submitted at the run's first test, judged when the check's turn comes)."""

import time
from pathlib import Path

from pytest_hpcvalidate.probes.jobwatch import JobWatch
from pytest_hpcvalidate.transport import CommandResult

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "slurm"
TIMED_OUT = (FIXTURES / "scontrol-show-job-timeout-22.05.txt").read_text()
RUNNING = TIMED_OUT.replace("JobState=TIMEOUT Reason=TimeLimit", "JobState=RUNNING Reason=None")
GONE = "slurm_load_jobs error: Invalid job id specified"


class Controller:
    """Answers ``scontrol show job`` with each of ``reads`` in turn (the last for ever after)."""

    name = "ctl"

    def __init__(self, reads: list[str]):
        self.reads, self.commands = reads, []

    def run(self, command: str, timeout: float = 30) -> CommandResult:
        self.commands.append(command)
        text = self.reads.pop(0) if len(self.reads) > 1 else self.reads[0]
        gone = text == GONE
        return CommandResult(self.name, command, 1 if gone else 0, "" if gone else text, text if gone else "", 0.01)


def test_the_final_record_is_kept_after_slurmctld_forgot_the_job():
    ctl = Controller([RUNNING, RUNNING, TIMED_OUT, GONE])
    watch = JobWatch(ctl, 347, poll_s=0.01)
    time.sleep(0.3)  # the check comes late: slurmctld has forgotten the job by now
    assert ctl.reads == [GONE]  # read up to the final record; what slurmctld would answer now
    started = watch.wait(lambda info: info.state != "PENDING", timeout=1)
    assert watch.started is not None and watch.started.state == "RUNNING"
    final = watch.wait(lambda info: info.final, timeout=1)
    assert final is not None and (final.state, final.raw["Reason"]) == ("TIMEOUT", "TimeLimit")
    assert started is final  # the watch stopped at the final record
    assert ctl.commands == ["scontrol show job -o 347"] * 3  # and read no more once the job had ended
    watch.stop()


def test_a_job_never_read_gives_none_after_the_timeout():
    watch = JobWatch(Controller([GONE]), 348, poll_s=0.01)
    assert watch.wait(lambda info: True, timeout=0.2) is None and watch.started is None
    watch.stop()


def test_the_watch_stops_when_told():
    ctl = Controller([RUNNING])
    watch = JobWatch(ctl, 349, poll_s=0.01)
    time.sleep(0.05)
    watch.stop()
    watch._thread.join(timeout=1)
    assert not watch._thread.is_alive() and watch.last is not None and watch.last.state == "RUNNING"
