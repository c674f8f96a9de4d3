"""A burst of short jobs: one job array of N one-CPU tasks submitted at once, followed until
every task has ended — which node ran each and how it ended — and what is wrong with it.

Per-node checks run one job on each node. A burst shows what they cannot: a node that fails
every job it is given while Slurm keeps it IDLE (a full /tmp, a broken mount, a bad library:
a "black hole" takes its share of every burst and fails it fast, so it takes more than its
share), and a scheduler that does not turn many small jobs over (array limits, slow
prologs/epilogs)."""

from __future__ import annotations

import re
import shlex
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from ..transport import CommandResult
from .slurm import FINAL_STATES, JobInfo, config_value, job_info, parse_oneliner, records, sbatch

#: what each task does, as a short job does: write and read back a MiB in its temporary
#: directory (``TMPDIR``, else /tmp), then print its task id and node
TASK_MIB = 1
TASK_SCRIPT = f"""#!/bin/sh
dir=${{TMPDIR:-/tmp}}
f=$(mktemp "$dir/hpcv-burst.XXXXXX") || {{ echo "hpcv-burst: cannot create a file in $dir on $(hostname)" >&2; exit 1; }}
trap 'rm -f "$f"' EXIT
if ! head -c {TASK_MIB * 1048576} /dev/zero > "$f" || [ "$(wc -c < "$f")" -ne {TASK_MIB * 1048576} ]; then
  echo "hpcv-burst: cannot write {TASK_MIB} MiB to $dir on $(hostname)" >&2; exit 1
fi
echo "hpcv-burst $SLURM_ARRAY_TASK_ID $(hostname)"
"""


@dataclass
class Burst:
    """What became of one burst: ``tasks`` {task id: the last record slurmctld gave of it}."""

    count: int
    args: str
    job_id: int | None
    submitted: CommandResult
    tasks: dict[int, JobInfo] = field(default_factory=dict)
    elapsed_s: float = 0.0
    errors: dict[int, str] = field(default_factory=dict)   # failed task id → what it wrote to stderr
    limits: str = ""                                        # slurm.conf's array/job limits, where sbatch refused
    pending_reason: str = ""                                # why the tasks not yet started wait (last read)

    @property
    def ended(self) -> list[JobInfo]:
        return [t for t in self.tasks.values() if t.state in FINAL_STATES]

    @property
    def finished(self) -> bool:
        return len(self.ended) == self.count

    @property
    def jobs_per_min(self) -> float:
        return 60.0 * len(self.ended) / self.elapsed_s if self.elapsed_s > 0 else 0.0


def task_id(info: JobInfo) -> int | None:
    """The array index of one task's record; None for the record of the tasks still pending
    together (``ArrayTaskId=5-31``)."""
    value = info.raw.get("ArrayTaskId", "")
    return int(value) if value.isdigit() else None


def pending_reason(text: str) -> str:
    """Why the tasks that have not started wait: the Reason of the record they share
    (``ArrayTaskId=5-31``); "" where every task has started."""
    for line in records(text, "JobId"):
        kv = parse_oneliner(line)
        if not kv.get("ArrayTaskId", "").isdigit() and kv.get("JobState") == "PENDING":
            return kv.get("Reason", "")
    return ""


def parse_tasks(text: str) -> dict[int, JobInfo]:
    """``scontrol show job -o <array job>`` → {task id: its record}, tasks that have started
    or ended (the pending rest share one record, left out)."""
    out = {}
    for line in records(text, "JobId"):
        info = job_info(parse_oneliner(line))
        tid = task_id(info)
        if tid is not None:
            out[tid] = info
    return out


def run_burst(controller, count: int, args: str, directory, timeout: float, poll_s: float = 0.5) -> Burst:
    """Submit ``count`` tasks as one array (``sbatch --array=0-<count-1> <args>``) from
    ``controller`` and follow them until every one has ended or ``timeout`` s have passed
    (the rest are then cancelled). Output and errors go to ``directory`` (shared; None:
    /dev/null); a failed task's errors are read back, and every file removed."""
    out = f"{directory}/hpcv-burst-%A_%a" if directory else ""
    files = f"-o {out}.out -e {out}.err" if directory else "-o /dev/null -e /dev/null"
    full = f"--array=0-{count - 1} {args} {files}"
    start = time.monotonic()
    job_id, submitted = sbatch(controller, full, TASK_SCRIPT)
    burst = Burst(count, full, job_id, submitted)
    if job_id is None:
        burst.limits = ", ".join(f"{k}={config_value(controller, k) or 'unset'}" for k in ("MaxArraySize", "MaxJobCount"))
        return burst
    deadline = start + timeout
    try:
        while True:
            r = controller.run(f"scontrol show job -o {job_id}", timeout=15)
            if r.ok:
                burst.tasks.update(parse_tasks(r.stdout))
                burst.pending_reason = pending_reason(r.stdout)
            burst.elapsed_s = time.monotonic() - start
            if burst.finished or time.monotonic() > deadline:
                break
            time.sleep(poll_s)
    finally:
        if not burst.finished:
            controller.run(f"scancel {job_id}", timeout=15)
        if directory:
            prefix = shlex.quote(f"{directory}/hpcv-burst-{job_id}_")
            failed = sorted(first_failed_per_node(burst).values())
            if failed:
                read = controller.run("; ".join(f"echo '== {t}'; tail -c 400 {prefix}{t}.err 2>&1" for t in failed),
                                      timeout=30)
                burst.errors = _split_errors(read.stdout)
            controller.run(f"rm -f {prefix}*.out {prefix}*.err", timeout=30)
    return burst


def _split_errors(text: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for block in re.split(r"^== ", text, flags=re.M)[1:]:
        head, _, body = block.partition("\n")
        if head.strip().isdigit():
            out[int(head)] = " ".join(body.split())[:300]
    return out


def failed(info: JobInfo) -> bool:
    return info.state in FINAL_STATES and not (info.state == "COMPLETED" and info.exit_code == "0:0")


#: where a task that never ran on a node is counted
NO_NODE = ""


def ran_on(info: JobInfo) -> str:
    """The node a task ran on; :data:`NO_NODE` where it ended before it started."""
    return NO_NODE if info.nodes in ("", "(null)", "None") else info.nodes


def first_failed_per_node(burst: Burst) -> dict[str, int]:
    """{node: the first task that failed there}."""
    out: dict[str, int] = {}
    for tid, info in sorted(burst.tasks.items()):
        if failed(info):
            out.setdefault(ran_on(info), tid)
    return out


def _how(tasks: list[JobInfo]) -> str:
    return ", ".join(f"{state} {code} ×{n}" for (state, code), n in Counter((t.state, t.exit_code) for t in tasks).most_common())


def problems(burst: Burst) -> list[str]:
    """What went wrong with a burst: tasks that failed, grouped by node (with how many each
    node ran, and what the first failed task there wrote), and tasks that had not ended."""
    out = []
    by_node: dict[str, list[JobInfo]] = defaultdict(list)
    for info in burst.tasks.values():
        by_node[ran_on(info)].append(info)
    firsts = first_failed_per_node(burst)
    for node in sorted(by_node):
        bad = [t for t in by_node[node] if failed(t)]
        if bad and node == NO_NODE:
            out.append(f"{len(bad)} task(s) ended before they ran on a node ({_how(bad)}; task {firsts[node]}: "
                       f"reason {bad[0].reason})")
        elif bad:
            said = burst.errors.get(firsts[node], "")
            out.append(f"{node} failed {len(bad)} of the {len(by_node[node])} tasks it ran ({_how(bad)})"
                       + (f"; task {firsts[node]} wrote: {said}" if said else ""))
    if not burst.finished:
        open_ = [t for t in burst.tasks.values() if t.state not in FINAL_STATES]
        pending = burst.count - len(burst.tasks)
        waiting = f" (reason {burst.pending_reason})" if pending and burst.pending_reason not in ("", "None") else ""
        where = Counter(ran_on(t) or "no node" for t in open_)
        out.append(f"{burst.count - len(burst.ended)} of {burst.count} tasks had not ended after "
                   f"{burst.elapsed_s:.0f} s ({pending} never started{waiting}" + (f", {_how(open_)}" if open_ else "")
                   + (f": still on {', '.join(f'{n} ×{k}' for n, k in sorted(where.items()))}" if open_ else "") + ")")
    return out
