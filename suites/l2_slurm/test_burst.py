"""Layer 2: a burst of short jobs. ``slurm.burst_jobs`` one-CPU tasks are submitted at once as
one job array in the largest partition; every one must complete, wherever Slurm put it,
within ``thresholds.burst_s_max``. Each task writes and reads back a MiB in its temporary
directory, as short jobs do. The jobs completed per minute are a metric
(``thresholds.burst_jobs_per_min_min`` where set)."""

from __future__ import annotations

from pytest_hpcvalidate.capabilities import not_applicable
from pytest_hpcvalidate.probes import burst, slurm

from ..conftest import partition_node_names

#: what paces a burst beyond the jobs themselves, named where it is too slow
PACE_SETTINGS = ("Prolog", "Epilog", "PrologFlags", "HealthCheckProgram", "SchedulerParameters")
BLACK_HOLE = ("A node that fails the jobs it is given while Slurm keeps it IDLE takes a share of every burst and "
              "fails it fast, then takes more (a black hole): drain it (scontrol update NodeName=<node> State=DRAIN "
              "Reason=...) until it is repaired, and have the node health check (HealthCheckProgram) catch the cause")


def test_a_burst_of_short_jobs_completes_on_every_node(controller, cluster, hpc_config, node_spec, thresholds,
                                                        metric):
    count = hpc_config.slurm.burst_jobs
    if count == 0:
        not_applicable("slurm.burst_jobs is 0 in the config")
    part, names = max(partition_node_names(hpc_config, node_spec), key=lambda pn: len(pn[1]))
    args = f"-p {part} -n1 -c1 --mem=64 --time=2"
    run = burst.run_burst(controller, count, args, cluster.shared_dir, timeout=thresholds.burst_s_max)
    assert run.job_id is not None, (
        f"sbatch refused a job array of {count} short jobs in partition {part} ({run.limits}): "
        f"{run.submitted.describe()}. Raise MaxArraySize above {count - 1} (or slurm.burst_jobs below it) and "
        "MaxJobCount well above the jobs a burst adds (slurmctld applies a changed MaxArraySize only when "
        "restarted)")
    wrong = burst.problems(run)
    assert not wrong, (f"a burst of {count} short jobs (job array {run.job_id}, partition {part}, "
                       f"{len(run.ended)} ended in {run.elapsed_s:.1f} s): " + "; ".join(wrong)
                       + (f". {BLACK_HOLE}" if any(" failed " in w for w in wrong) else ""))
    rate = metric("burst_jobs_per_min", round(run.jobs_per_min, 1), "jobs/min", thresholds.burst_jobs_per_min_min,
                  ">=")
    if rate.passed:
        return
    used = sorted({t.nodes for t in run.tasks.values()})
    config = slurm.show_config(controller)
    settings = ", ".join(f"{k}={config[k]}" for k in PACE_SETTINGS if config.get(k, "(null)") not in ("(null)", ""))
    raise AssertionError(f"a burst of {count} short jobs in partition {part} took {run.elapsed_s:.1f} s, "
                         f"{rate.message}; they ran on {', '.join(used)} of its {len(names)} nodes"
                         f" (slurm.conf: {settings or 'no prolog, epilog or scheduler parameters'}). Slow prologs/"
                         "epilogs, a node health check run per job, or SchedulerParameters that start few jobs "
                         "per pass show here")
