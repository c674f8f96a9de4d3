"""Layer 2, time limits are enforced: a job that outlives its time limit is stopped, and is
recorded TIMEOUT.

The backfill scheduler plans every start from the running jobs' end times; a job that runs
on past its limit holds nodes the plan gave to others, and users learn that ``--time`` means
nothing. ``OverTimeLimit=UNLIMITED`` (in slurm.conf or on a partition) does exactly that.
"""

from __future__ import annotations

from pytest_hpcvalidate.probes import slurm

from ..conftest import NO_SCONTROL_EXIT

#: slurmctld looks for jobs past their time limit every 30 s (PERIODIC_TIMEOUT in its source)
TIME_LIMIT_PASS_S = 30
#: beyond that pass and KillWait: the job step's end reaching slurmctld, the polls
MARGIN_S = 15


def test_a_job_past_its_time_limit_is_stopped(controller, thresholds, hpc_config, job_past_its_time_limit):
    job_id, submitted = job_past_its_time_limit.get()
    assert job_id is not None, f"sbatch of the job that outlives its time limit failed: {submitted.describe()}"
    config = slurm.show_config(controller)
    watch = job_past_its_time_limit.watch
    last = watch.wait(lambda info: info.state != "PENDING", timeout=thresholds.job_start_s_max)
    started = watch.started
    assert started is not None, (
        f"job {job_id} did not start within {thresholds.job_start_s_max:g}s "
        f"({last.reason if last else 'scontrol shows no such job'})")
    partition = started.raw.get("Partition", "")
    partition_kv = slurm.partition_settings(controller, partition)
    grace_min = slurm.over_time_limit_min(config, partition_kv)
    kill_wait = slurm.leading_int(config.get("KillWait", "30"))
    kill_wait = 30 if kill_wait is None else kill_wait  # Slurm's default
    allowed = (grace_min or 0) * 60 + TIME_LIMIT_PASS_S + kill_wait + MARGIN_S
    info = watch.wait(lambda i: i.final or (slurm.seconds_past_end(i) or 0) > allowed,
                      timeout=allowed + thresholds.job_start_s_max)
    assert info is not None, f"job {job_id}: scontrol shows no such job"
    where = f"job {job_id} on {info.nodes or '?'} (partition {partition or '?'})"
    said = info.raw.get("Comment") or "scontrol update JobId=… EndTime=now+10 in the job failed and said nothing"
    assert (info.state, info.exit_code) != ("FAILED", NO_SCONTROL_EXIT), (
        f"{where}: the job could not shorten its own time limit ({said}): scontrol must be on the compute nodes, a "
        f"user allowed to shorten their job, and the node's clock within seconds of the controller's")
    late = slurm.seconds_past_end(info)
    settings = (f"OverTimeLimit: slurm.conf {config.get('OverTimeLimit', '?')}, partition {partition} "
                f"{partition_kv.get('OverTimeLimit', '?')}; KillWait {kill_wait} s")
    assert info.final, (
        f"{where} is {info.state} {'?' if late is None else f'{late:.0f}'} s past its time limit (EndTime "
        f"{info.raw.get('EndTime')}); slurmctld should have stopped it within {allowed} s ({settings}): time "
        f"limits are not enforced"
        + (" (OverTimeLimit UNLIMITED never stops a job)" if grace_min is None else ""))
    assert (info.state, info.raw.get("Reason")) == ("TIMEOUT", "TimeLimit"), (
        f"{where}, which outlived its time limit, ended {info.state} (Reason {info.raw.get('Reason')}, exit code "
        f"{info.exit_code}), not TIMEOUT (TimeLimit): a job stopped at its limit is recorded as something else")
    if not hpc_config.slurm.accounting:
        return
    row, r = slurm.sacct_record(controller, job_id, lambda row: row[1] == "TIMEOUT", thresholds.job_start_s_max)
    assert r.ok, f"sacct failed: {r.describe()}"
    assert row is not None and row[1] == "TIMEOUT", (
        f"sacct shows {where} as {row[1:] if row else 'nothing'}, scontrol as TIMEOUT: the accounting record "
        f"does not say the job ran out of time")
