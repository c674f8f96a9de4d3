"""What a job step may use: the CPUs it is pinned to, the devices it may open, its GPUs.

The scripts here run *inside* a Slurm step (``srun ... sh -c SCRIPT``) and print one fact
per line; the parsers turn that into typed facts. Shell only (POSIX sh + coreutils), so they
run on any node image.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

#: prints what a step sees: its node, CPUs, GPU variables, and per device whether open() is
#: allowed. ENXIO ("No such device or address") means the devices cgroup let the open through
#: and no driver answered (simulated GPUs); EPERM means the cgroup denied it.
STEP_FACTS = r"""
echo "NODE $(hostname)"
echo "CPUS $(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status)"
echo "CVD ${CUDA_VISIBLE_DEVICES-unset}"
echo "STEP_GPUS ${SLURM_STEP_GPUS-${SLURM_JOB_GPUS-unset}}"
echo "START $(date +%s.%N)"
for d in $HPCV_DEVICES; do
  [ -e "$d" ] || { echo "DEV $d missing"; continue; }
  msg=$( (exec 3<"$d") 2>&1 ) && { echo "DEV $d open"; continue; }
  case "$msg" in
    *"not permitted"*) echo "DEV $d denied";;
    *"No such device"*) echo "DEV $d open";;
    *) echo "DEV $d error: $msg";;
  esac
done
[ -n "$HPCV_HOLD" ] && sleep "$HPCV_HOLD"
echo "END $(date +%s.%N)"
"""


def step_facts_command(devices: list[str], hold_s: float = 0.0) -> str:
    """The shell command (for ``srun ... sh -c``) that prints :data:`STEP_FACTS` for ``devices``."""
    hold = f"{hold_s:g}" if hold_s else ""
    return f"HPCV_DEVICES={shlex.quote(' '.join(devices))} HPCV_HOLD={hold}; export HPCV_DEVICES HPCV_HOLD; {STEP_FACTS}"


def side_by_side(srun_args: list[str], command: str) -> str:
    """One shell command that starts ``srun <args> /bin/sh -c <command>`` for every entry of
    ``srun_args`` at once, in the background, and waits for them all; each job's lines (stdout
    and stderr) come tagged ``J<i> `` for :func:`split_side_by_side`."""
    return "".join(f"srun {args} /bin/sh -c {shlex.quote(command)} 2>&1 | sed 's/^/J{i} /' & "
                   for i, args in enumerate(srun_args, 1)) + "wait"


def overlapped(a, b) -> bool:
    """Whether two steps (anything with ``start`` and ``end`` times, e.g. :class:`StepFacts`)
    ran at the same time for a while."""
    return a.start < b.end and b.start < a.end


def split_side_by_side(text: str, count: int) -> list[str]:
    """The output of each of the ``count`` jobs of a :func:`side_by_side` command, in order."""
    out = []
    for i in range(1, count + 1):
        tag = f"J{i} "
        out.append("\n".join(line[len(tag):] for line in text.splitlines() if line.startswith(tag)))
    return out


def parse_cpulist(text: str) -> frozenset[int]:
    """``0-3,8,10-11`` → {0,1,2,3,8,10,11}."""
    out: set[int] = set()
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return frozenset(out)


def cpulist(cpus) -> str:
    """{0,1,2,3,8} → ``0-3,8`` (the kernel's list format, :func:`parse_cpulist`'s inverse)."""
    runs: list[list[int]] = []
    for c in sorted(cpus):
        if runs and c == runs[-1][1] + 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return ",".join(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in runs)


def shared_cpus(tasks) -> list[tuple[int, int, frozenset[int]]]:
    """``(i, j, CPUs)`` for every pair of tasks (anything with ``cpus``, in task order) that may
    run on the same CPUs; empty when each task's CPUs are its own."""
    return [(i, j, tasks[i].cpus & tasks[j].cpus) for i in range(len(tasks)) for j in range(i + 1, len(tasks))
            if tasks[i].cpus & tasks[j].cpus]


@dataclass(frozen=True)
class StepFacts:
    node: str = ""
    cpus: frozenset[int] = frozenset()
    cuda_visible: tuple[str, ...] | None = None   # None: unset
    step_gpus: tuple[str, ...] | None = None       # global GRES indices Slurm gave the step
    devices: dict[str, str] = field(default_factory=dict)  # path -> open | denied | missing | error: ...
    start: float = 0.0
    end: float = 0.0

    @property
    def opened(self) -> list[str]:
        return sorted(d for d, s in self.devices.items() if s == "open")

    @property
    def denied(self) -> list[str]:
        return sorted(d for d, s in self.devices.items() if s == "denied")


def _ids(value: str) -> tuple[str, ...] | None:
    value = value.strip()
    if value == "unset":
        return None
    return tuple(v for v in value.split(",") if v)


_LABEL = re.compile(r"^\s*(\d+): ", re.M)


def parse_step_facts(text: str) -> list[StepFacts]:
    """One StepFacts per task. Tasks running side by side interleave their lines: run them with
    ``srun -l`` (lines prefixed ``<task>: ``) and each task's lines are grouped by its label."""
    if _LABEL.search(text):
        tasks: dict[int, list[str]] = {}
        for line in text.splitlines():
            m = _LABEL.match(line)
            if m:
                tasks.setdefault(int(m.group(1)), []).append(line[m.end():])
        return [f for t in sorted(tasks) for f in _parse_block("\n".join(tasks[t]))]
    return _parse_block(text)


def _parse_block(text: str) -> list[StepFacts]:
    out: list[dict] = []
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "NODE":
            out.append({"node": value.strip(), "devices": {}})
        elif not out:
            continue
        elif key == "CPUS":
            out[-1]["cpus"] = parse_cpulist(value)
        elif key == "CVD":
            out[-1]["cuda_visible"] = _ids(value)
        elif key == "STEP_GPUS":
            out[-1]["step_gpus"] = _ids(value)
        elif key in ("START", "END"):
            out[-1][key.lower()] = float(value)
        elif key == "DEV":
            path, _, status = value.partition(" ")
            out[-1]["devices"][path] = status
    return [StepFacts(**d) for d in out]


_OOM = re.compile(r"out.of.memory|oom-kill", re.I)


def oom_reported(text: str) -> bool:
    """Slurm's words for an OOM kill of a step (srun stderr / job state)."""
    return bool(_OOM.search(text))


# -- processes a job leaves behind ----------------------------------------------------------------
def escape_command(marker: str) -> str:
    """A step body that starts a process in a session of its own (``setsid``: reparented to
    init once the step's shell exits, outside the step's process group) and returns at once.
    ``marker`` (e.g. ``9876.123456``) makes its command line unique: ``sleep <marker>``."""
    # the step returns only once the process runs as "sleep" (setsid() is called before the
    # exec): ending sooner, Slurm could kill it with the step's process group before it left
    return (f"setsid sleep {marker} </dev/null >/dev/null 2>&1 & p=$!; i=0; "
            "while [ \"$(cat /proc/$p/comm 2>/dev/null)\" != sleep ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; "
            "echo started")


def _pattern(marker: str) -> str:
    # "[s]leep": the pattern does not match the shell that runs pgrep with it in its command line
    return shlex.quote(f"[s]leep {marker}")


def leftover_pids(node, marker: str) -> list[int]:
    """Pids of ``sleep <marker>`` still running on ``node``."""
    r = node.run(f"pgrep -f {_pattern(marker)} || true", timeout=15)
    return sorted(int(p) for p in r.stdout.split() if p.isdigit())


def kill_leftovers(node, marker: str) -> None:
    node.run(f"pkill -KILL -f {_pattern(marker)} || true", timeout=15)


def parse_ulimit(text: str) -> int | str | None:
    """``ulimit -l`` (or any ``ulimit``) output: ``"unlimited"`` or the number; None otherwise."""
    value = text.strip().splitlines()[-1].strip() if text.strip() else ""
    if value == "unlimited":
        return value
    return int(value) if value.isdigit() else None
