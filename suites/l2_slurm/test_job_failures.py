"""Layer 2, a job that fails is seen to fail: the exit status CI pipelines, workflow engines
and users' scripts act on.

A site's ``srun``/``sbatch`` wrapper (module loading, job statistics appended to every script)
that loses the exit status makes every failed job look like a success: a pipeline goes on
with results that were never written. The seed project's job-failure suite fed exit codes to
its diagnosis tool directly and never submitted a failing job through Slurm; here each check
submits one, from the controller, as users do.
"""

from __future__ import annotations

import pytest

from pytest_hpcvalidate.probes import slurm

#: what the failing jobs exit with (unlike 1, no shell or Slurm error produces it by accident)
EXIT = 3
#: the failing batch jobs: the last command fails (a ``sh -c 'exit 3'``, not the shell's own
#: ``exit``, so that anything run after it, lines a wrapper appended, would show in the exit
#: code), or the batch shell kills itself with a signal
BATCH = {"exit": f"echo started\nsh -c 'exit {EXIT}'", "KILL": "kill -KILL $$", "SEGV": "kill -SEGV $$"}


@pytest.fixture(scope="module")
def failed_batch_jobs(controller, thresholds) -> dict[str, slurm.BatchRun]:
    """The module's failing batch jobs, submitted at once and waited for together (each job's
    wait is mostly the scheduler's next pass): {tag: BatchRun}."""
    submitted = {tag: slurm.sbatch(controller, "-N1 -o /dev/null -e /dev/null", script) for tag, script in BATCH.items()}
    return {tag: slurm.BatchRun(job_id, result,
                                slurm.wait_job(controller, job_id, timeout=thresholds.job_start_s_max) if job_id else None)
            for tag, (job_id, result) in submitted.items()}


def test_srun_returns_the_exit_status_of_a_failing_task(controller, thresholds):
    r = slurm.srun(controller, "-N1 -n1", f"exit {EXIT}", timeout=thresholds.job_start_s_max + 30)
    assert r.exit_code == EXIT, (
        f"srun on {controller.name} of a task that exits {EXIT} returned {r.exit_code}: a failing job step "
        f"looks like {'a success' if r.exit_code == 0 else 'another failure'} to whatever ran srun "
        f"(srun is {slurm.program_kind(controller, 'srun')}; a wrapper must end with exec, or exit with srun's "
        f"status); stderr: {r.stderr.strip()[-300:] or 'empty'}")


def test_failing_batch_job_is_recorded_failed_with_its_exit_code(controller, thresholds, hpc_config, failed_batch_jobs):
    run = failed_batch_jobs["exit"]
    assert run.job_id is not None, f"sbatch failed: {run.submitted.describe()}"
    info = run.info
    assert info is not None and info.final, f"job {run.job_id} did not end within {thresholds.job_start_s_max:g}s"
    assert (info.state, info.exit_code) == ("FAILED", f"{EXIT}:0"), (
        f"batch job {run.job_id}, whose script's last command exits {EXIT}, ended {info.state} with exit code "
        f"{info.exit_code} (expected FAILED, {EXIT}:0): the script's exit status is lost (sbatch is "
        f"{slurm.program_kind(controller, 'sbatch')}: a wrapper or job_submit plugin that adds commands after "
        f"the script's last line hides it)")
    if not hpc_config.slurm.accounting:
        return
    row, r = slurm.sacct_record(controller, run.job_id, lambda row: row[1] == "FAILED", thresholds.job_start_s_max)
    assert r.ok, f"sacct failed: {r.describe()}"
    assert row is not None and row[1:] == ["FAILED", f"{EXIT}:0"], (
        f"sacct shows batch job {run.job_id} as {row[1:] if row else 'nothing'}, scontrol as FAILED {EXIT}:0: "
        f"the accounting record (what reports and CI gates read) does not say the job failed")


@pytest.mark.parametrize("signal_number, name", [(9, "KILL"), (11, "SEGV")])
def test_job_killed_by_a_signal_is_recorded_with_the_signal(controller, thresholds, signal_number, name,
                                                            failed_batch_jobs):
    """A batch job whose shell is killed by a signal (an OOM kill, a segfault) ends FAILED with
    the signal in its exit code (``0:<signal>``), and ``srun`` of such a task returns 128 +
    the signal, as a shell does: either way never a success."""
    run = failed_batch_jobs[name]
    assert run.job_id is not None, f"sbatch failed: {run.submitted.describe()}"
    info = run.info
    assert info is not None and info.final, f"job {run.job_id} did not end within {thresholds.job_start_s_max:g}s"
    assert (info.state, info.exit_code) == ("FAILED", f"0:{signal_number}"), (
        f"batch job {run.job_id}, whose shell killed itself with SIG{name}, ended {info.state} with exit code "
        f"{info.exit_code} (expected FAILED, 0:{signal_number}): a crash is recorded as something else")
    r = slurm.srun(controller, "-N1 -n1", f"kill -{name} $$", timeout=thresholds.job_start_s_max + 30)
    assert r.exit_code == 128 + signal_number, (
        f"srun on {controller.name} of a task killed by SIG{name} returned {r.exit_code}, not {128 + signal_number} "
        f"(srun is {slurm.program_kind(controller, 'srun')})")
