"""Slurm facts: nodes and partitions as the controller sees them (``scontrol show ... -o``)."""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from ..transport import CommandResult
from .nodeimage import count_list

_KEY = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z_:/]*)=")  # job keys include AllocNode:Sid, CPUs/Task

#: base states in which a node can take work
USABLE_STATES = {"IDLE", "MIXED", "ALLOCATED", "COMPLETING"}
#: flags that make a node unusable whatever its base state
BAD_FLAGS = {"DRAIN", "DRAINING", "DRAINED", "NOT_RESPONDING", "FAIL", "FAILING", "POWERED_DOWN", "POWERING_DOWN",
             "INVALID_REG", "MAINTENANCE", "REBOOT_REQUESTED", "REBOOT_ISSUED"}


def parse_oneliner(line: str) -> dict[str, str]:
    """``Key=Value Key2=Value with spaces`` → dict (values may contain spaces, e.g. OS=, Reason=)."""
    matches = list(_KEY.finditer(line))
    out: dict[str, str] = {}
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(line)
        out[m.group(1)] = line[m.end():end].strip()
    return out


def parse_gres(text: str) -> dict[str, int]:
    """``gpu:h100:2(S:0-1),gpu:a100:1`` → ``{"gpu:h100": 2, "gpu:a100": 1}``; ``(null)`` → {}."""
    out: dict[str, int] = {}
    if not text or text in ("(null)", "N/A"):
        return out
    for item in re.split(r",(?![^()]*\))", text):
        item = re.sub(r"\(.*\)$", "", item.strip())
        parts = item.split(":")
        if len(parts) >= 2 and parts[-1].isdigit():
            key, count = ":".join(parts[:-1]), int(parts[-1])
        else:
            key, count = item, 1
        out[key] = out.get(key, 0) + count
    return out


@dataclass(frozen=True)
class SlurmNode:
    name: str
    state: str  # base state, upper case: IDLE, MIXED, DOWN, ...
    flags: frozenset[str]
    cpus: int
    real_memory_mb: int
    gres: dict[str, int]
    address: str
    partitions: tuple[str, ...]
    reason: str
    raw: dict = field(repr=False, default_factory=dict)

    @property
    def usable(self) -> bool:
        return self.state in USABLE_STATES and not (self.flags & BAD_FLAGS)

    @property
    def state_text(self) -> str:
        return "+".join([self.state, *sorted(self.flags)])

    @property
    def features(self) -> tuple[str, ...]:
        """Its features (``AvailableFeatures``), in Slurm's order; () for none."""
        text = self.raw.get("AvailableFeatures", "")
        return () if text in ("", "(null)") else tuple(f for f in text.split(",") if f)

    def gpu_count(self) -> int:
        return sum(n for k, n in self.gres.items() if k == "gpu" or k.startswith("gpu:"))

    @property
    def job_cpus(self) -> int:
        """The CPUs jobs may be given: ``CPUEfctv`` (those not kept for the system by
        CoreSpecCount/CpuSpecList; Slurm 22.05+), else ``CPUTot``."""
        return leading_int(self.raw.get("CPUEfctv", "")) or self.cpus

    @property
    def job_memory_mb(self) -> int:
        """The memory jobs may be given: ``RealMemory`` less ``MemSpecLimit`` (kept for the system)."""
        return self.real_memory_mb - (leading_int(self.raw.get("MemSpecLimit", "")) or 0)

    def fits(self, job_cpus: int, job_memory_mib: float, usable_cpus: int | None = None) -> tuple[int, int]:
        """How many jobs each given ``job_cpus`` CPUs and ``job_memory_mib`` of memory the node
        holds at once: (by its CPUs, by its memory). ``usable_cpus``: the CPUs jobs may use there
        where fewer than :attr:`job_cpus` (a partition's MaxCPUsPerNode)."""
        cpus = self.job_cpus if usable_cpus is None else usable_cpus
        return cpus // max(1, job_cpus), int(self.job_memory_mb // max(1.0, job_memory_mib))


def parse_state(text: str) -> tuple[str, frozenset[str]]:
    """``IDLE+DRAIN`` / ``DOWN*+NOT_RESPONDING`` / ``idle*`` → ("IDLE", {"DRAIN"}) ...; ``*`` = NOT_RESPONDING."""
    parts = text.upper().split("+")
    flags = set(parts[1:])
    base = parts[0]
    if base.endswith("*"):
        base = base[:-1]
        flags.add("NOT_RESPONDING")
    for suffix, flag in (("~", "POWERED_DOWN"), ("#", "POWERING_UP"), ("%", "POWERING_DOWN"), ("$", "MAINTENANCE"), ("@", "REBOOT_REQUESTED")):
        if base.endswith(suffix):
            base = base[:-1]
            flags.add(flag)
    return base, frozenset(flags)


def records(text: str, first_key: str) -> list[str]:
    """Records of ``scontrol show`` output, one-line (``-o``) or multi-line, each as one line."""
    out: list[str] = []
    for line in text.splitlines():
        if line.startswith(first_key + "="):
            out.append(line.strip())
        elif out and line.strip():
            out[-1] += " " + line.strip()
    return out


def parse_nodes(text: str) -> dict[str, SlurmNode]:
    """Output of ``scontrol show node [-o]`` → {name: SlurmNode}."""
    nodes = {}
    for line in records(text, "NodeName"):
        kv = parse_oneliner(line)
        state, flags = parse_state(kv.get("State", "UNKNOWN"))
        name = kv["NodeName"]
        nodes[name] = SlurmNode(
            name=name,
            state=state,
            flags=flags,
            cpus=int(kv.get("CPUTot", "0") or 0),
            real_memory_mb=int(kv.get("RealMemory", "0") or 0),
            gres=parse_gres(kv.get("Gres", "")),
            address=kv.get("NodeAddr", ""),
            partitions=tuple(p for p in kv.get("Partitions", "").split(",") if p),
            reason=kv.get("Reason", ""),
            raw=kv,
        )
    return nodes


@dataclass(frozen=True)
class SlurmPartition:
    name: str
    nodes: str  # hostlist as Slurm prints it
    default: bool
    max_time: str
    state: str
    oversubscribe: str = ""  # NO, EXCLUSIVE, YES[:n], FORCE[:n]
    max_cpus_per_node: int | None = None  # MaxCPUsPerNode: what its jobs may use of a node; None: no limit

    @property
    def forces_sharing(self) -> bool:
        """OverSubscribe=FORCE: jobs share CPUs whether they ask to or not."""
        return self.oversubscribe.upper().startswith("FORCE")


def time_limit_seconds(text: str) -> int | None:
    """A Slurm time limit in seconds; None for UNLIMITED/INFINITE. The formats of sbatch
    ``--time`` and of scontrol: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``.
    ValueError for anything else."""
    text = text.strip()
    if text.upper() in ("UNLIMITED", "INFINITE"):
        return None
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if not m:
        raise ValueError(f"not a Slurm time limit: {text!r}")
    days, a, b, c = m.groups()
    parts = [int(a)] + [int(x) for x in (b, c) if x is not None]
    if days is not None:  # D-H, D-H:M, D-H:M:S
        h, mi, s = (parts + [0, 0])[:3]
        return ((int(days) * 24 + h) * 60 + mi) * 60 + s
    if len(parts) == 3:
        return (parts[0] * 60 + parts[1]) * 60 + parts[2]
    return parts[0] * 60 + (parts[1] if len(parts) == 2 else 0)  # M or M:S


def parse_partitions(text: str) -> dict[str, SlurmPartition]:
    """Output of ``scontrol show partition -o`` → {name: SlurmPartition}."""
    out = {}
    for line in records(text, "PartitionName"):
        kv = parse_oneliner(line)
        out[kv["PartitionName"]] = SlurmPartition(
            name=kv["PartitionName"], nodes=kv.get("Nodes", ""), default=kv.get("Default", "NO") == "YES",
            max_time=kv.get("MaxTime", ""), state=kv.get("State", ""), oversubscribe=kv.get("OverSubscribe", ""),
            max_cpus_per_node=leading_int(kv.get("MaxCPUsPerNode", "")),
        )
    return out


def show_nodes(controller) -> dict[str, SlurmNode]:
    """Every node as slurmctld sees it, read on the controller."""
    return parse_nodes(controller.run("scontrol show node -o", timeout=30).check().stdout)


def show_partitions(controller) -> dict[str, SlurmPartition]:
    return parse_partitions(controller.run("scontrol show partition -o", timeout=30).check().stdout)


def partition_settings(controller, name: str) -> dict[str, str]:
    """Every ``Key=value`` of one partition as slurmctld has it ({} when scontrol fails)."""
    r = controller.run(f"scontrol show partition -o {shlex.quote(name)}", timeout=30)
    recs = records(r.stdout, "PartitionName") if r.ok else []
    return parse_oneliner(recs[0]) if recs else {}


def srun(node, args: str, command: str, timeout: float = 60.0) -> CommandResult:
    """``srun <args> <command>`` submitted from ``node`` (command quoted for the shell)."""
    return node.run(f"srun {args} /bin/sh -c {shlex.quote(command)}", timeout=timeout)


def per_node_lines(result: CommandResult) -> dict[str, list[str]]:
    """Split output of ``srun -l`` style ``<host>: line`` into {host: [lines]}."""
    out: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        host, sep, rest = line.partition(": ")
        if sep:
            out.setdefault(host.strip(), []).append(rest)
    return out


_SIZE_UNITS = {"": 1 / 1024 ** 2, "K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0 ** 2}


def parse_size_mib(text: str) -> float:
    """A Slurm size (sacct's MaxRSS ``101692K``, ``96M``, ``1.5G``; a bare number is bytes, as
    ``sacct --noconvert`` prints it) in MiB; 0 for an empty field."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?)\s*", text or "")
    if not m:
        return 0.0
    return float(m.group(1)) * _SIZE_UNITS[m.group(2)]


# -- batch jobs ---------------------------------------------------------------------------------
#: job states after which a job will not change any more
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
                "BOOT_FAIL", "DEADLINE"}


def parse_job_id(text: str) -> int | None:
    """``sbatch --parsable`` prints ``<id>[;cluster]``; plain sbatch ``Submitted batch job <id>``."""
    m = re.search(r"^(?:Submitted batch job\s+)?(\d+)(?:;\S+)?\s*$", text.strip(), re.M)
    return int(m.group(1)) if m else None


def sbatch(node, args: str, script: str, timeout: float = 30.0) -> tuple[int | None, CommandResult]:
    """Submit ``script`` (a shell script body) from ``node``; returns (job id or None, result)."""
    body = script if script.startswith("#!") else "#!/bin/sh\n" + script
    result = node.run(f"sbatch --parsable {args} <<'HPCV_EOF'\n{body}\nHPCV_EOF", timeout=timeout)
    return (parse_job_id(result.stdout) if result.ok else None), result


@dataclass(frozen=True)
class JobInfo:
    job_id: int
    state: str          # COMPLETED, OUT_OF_MEMORY, RUNNING, ...
    exit_code: str      # "0:0" (code:signal)
    nodes: str
    reason: str
    raw: dict = field(repr=False, default_factory=dict)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def tres(self) -> dict[str, str]:
        """What the job was given (``TRES=cpu=1,mem=512M,node=1``) → {"cpu": "1", "mem": "512M", ...}."""
        return dict(item.partition("=")[::2] for item in self.raw.get("TRES", "").split(",") if "=" in item)


@dataclass(frozen=True)
class BatchRun:
    """A batch job submitted, waited for, and its output file read where it was submitted."""

    job_id: int | None
    submitted: CommandResult
    info: JobInfo | None = None
    output: CommandResult | None = None  # ``cat`` of the output file (None: no directory given)
    path: str = ""

    def output_said(self, submitter: str) -> str:
        """What the output file holds, or why it could not be read on ``submitter``."""
        if self.output is None:
            return "no output file"
        if self.output.ok:
            return self.output.stdout.strip()[-1200:]
        return f"its output file {self.path} is not readable on {submitter} ({self.output.stderr.strip()})"


def batch_run(node, directory, tag: str, args: str, script: str, timeout: float) -> BatchRun:
    """``sbatch`` ``script`` from ``node`` with its stdout to ``<directory>/hpcv-<tag>-<job>.out``
    (stderr, where slurmstepd writes its own messages, to ``.err``), wait until it ends, read the
    output file on ``node`` and remove both files. ``directory`` None: output to /dev/null."""
    out = f"{directory}/hpcv-{tag}-%j.out" if directory else "/dev/null"
    err = f"{directory}/hpcv-{tag}-%j.err" if directory else "/dev/null"
    job_id, submitted = sbatch(node, f"{args} -o {out} -e {err}", script)
    if job_id is None:
        return BatchRun(None, submitted)
    path, err_path = out.replace("%j", str(job_id)), err.replace("%j", str(job_id))
    try:
        info = wait_job(node, job_id, timeout=timeout)
        output = node.run(f"cat {shlex.quote(path)}", timeout=20) if directory else None
    finally:
        if directory:
            node.run(f"rm -f {shlex.quote(path)} {shlex.quote(err_path)}", timeout=20)
    return BatchRun(job_id, submitted, info, output, path if directory else "")


def job_info(kv: dict[str, str]) -> JobInfo:
    """One ``scontrol show job`` record (parsed by :func:`parse_oneliner`) as a JobInfo."""
    return JobInfo(int(kv.get("JobId") or 0), kv.get("JobState", "UNKNOWN"), kv.get("ExitCode", ""),
                   kv.get("NodeList", ""), kv.get("Reason", ""), kv)


def parse_job(text: str) -> JobInfo | None:
    recs = records(text, "JobId")
    return job_info(parse_oneliner(recs[0])) if recs else None


def wait_job(controller, job_id: int, timeout: float = 60.0, poll_s: float = 0.2,
             until: Callable[[JobInfo], bool] | None = None) -> JobInfo | None:
    """Poll ``scontrol show job`` until the job is final, or ``until(info)`` holds (or
    ``timeout``); the last JobInfo seen."""
    deadline = time.monotonic() + timeout
    info = None
    while True:
        r = controller.run(f"scontrol show job -o {job_id}", timeout=15)
        info = parse_job(r.stdout) if r.ok else info
        if (info is not None and (info.final or (until is not None and until(info)))) or time.monotonic() > deadline:
            return info
        time.sleep(poll_s)


_DURATION = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$")


def parse_duration_s(text: str) -> int | None:
    """A Slurm duration (``RunTime=``, ``TimeLimit=``: ``[D-]HH:MM:SS`` or ``MM:SS``) in
    seconds; None for UNLIMITED, NONE, N/A or anything else."""
    m = _DURATION.match(text.strip())
    if not m:
        return None
    days, hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def _stamp_s(text: str) -> float | None:
    """``2026-12-03T20:27:01`` (slurmctld's local time) → seconds on one consistent scale."""
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None


def seconds_past_end(info: JobInfo) -> float | None:
    """How far past its EndTime a running job is, by slurmctld's own clock (StartTime +
    RunTime is slurmctld's now): negative while within its time limit; None when unknown."""
    start, end = _stamp_s(info.raw.get("StartTime", "")), _stamp_s(info.raw.get("EndTime", ""))
    run = parse_duration_s(info.raw.get("RunTime", ""))
    return None if start is None or end is None or run is None else start + run - end


def over_time_limit_min(config: dict[str, str], partition: dict[str, str]) -> int | None:
    """The minutes slurmctld lets a job run past its time limit before it stops it: the
    partition's OverTimeLimit where set (``OverTimeLimit=NONE``: not set), else slurm.conf's
    (``OverTimeLimit = 0 min``); None for UNLIMITED (never stopped)."""
    value = partition.get("OverTimeLimit", "NONE")
    if value in ("NONE", ""):
        value = config.get("OverTimeLimit", "0 min")
    return leading_int(value or "0")


def leading_int(value: str) -> int | None:
    """The number a ``scontrol show config`` value starts with (``2 sec``, ``0 min``, ``5``);
    None for UNLIMITED, N/A or nothing."""
    words = value.split()
    return int(words[0]) if words and words[0].isdigit() else None


def sacct_record(controller, job: int | str, done: Callable[[list[str]], bool], timeout: float,
                 fields: str = "JobID,State,ExitCode", flags: str = "-X") -> tuple[list[str] | None, CommandResult]:
    """The ``sacct`` row of ``job`` (a job id, or ``<id>.<step>``; ``-P``, ``fields`` starting
    with JobID, ``flags``: ``-X`` for the allocation), polled until ``done(row)`` or ``timeout``
    (slurmdbd gets records asynchronously): (the last row seen or None, the last sacct result)."""
    deadline = time.monotonic() + timeout
    while True:
        r = controller.run(f"sacct -n -P {flags} -j {job} -o {fields}", timeout=30)
        row = next((line.split("|") for line in r.stdout.splitlines() if line.startswith(f"{job}|")), None) \
            if r.ok else None
        if not r.ok or (row is not None and done(row)) or time.monotonic() > deadline:
            return row, r
        time.sleep(0.5)


def program_kind(node, program: str) -> str:
    """Where ``program`` comes from on ``node`` and whether it is a script (a site's wrapper):
    ``/usr/bin/srun (an ELF binary)`` / ``/usr/local/bin/srun (a script: #!/bin/sh)``."""
    r = node.run(f"p=$(command -v {shlex.quote(program)}) && echo \"$p\" && head -c 64 \"$p\" | head -n 1", timeout=15)
    lines = r.stdout.splitlines()
    if not r.ok or not lines:
        return f"{program} (not found)"
    head = lines[1] if len(lines) > 1 else ""
    return f"{lines[0]} ({'a script: ' + head.strip()[:40] if head.startswith('#!') else 'a binary'})"


# -- gres.conf ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class GresLine:
    nodes: str            # NodeName= hostlist ("" = every node)
    name: str             # Name= (gpu)
    type: str             # Type=
    files: tuple[str, ...]  # File= expanded


def parse_gres_conf(text: str) -> list[GresLine]:
    """gres.conf lines with ``Name=`` (comments, AutoDetect lines without files kept as files=())."""
    from ..hostlist import expand

    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or "Name=" not in line:
            continue
        kv = dict(part.split("=", 1) for part in line.split() if "=" in part)
        files = tuple(expand(kv["File"])) if kv.get("File") else ()
        out.append(GresLine(kv.get("NodeName", ""), kv.get("Name", ""), kv.get("Type", ""), files))
    return out


def gres_files_for(lines: list[GresLine], node: str, name: str = "gpu") -> list[str]:
    """The device files gres.conf gives ``node`` for GRES ``name``."""
    from ..hostlist import expand

    out: list[str] = []
    for g in lines:
        if g.name == name and (not g.nodes or node in expand(g.nodes)):
            out += list(g.files)
    return out


#: slurmd -G's lines, one per GRES record it found (22.05: "slurmd: Gres Name=gpu Type=sim
#: Count=2 Index=0 ID=7696487 File=/dev/nvidia[0-1] (null)"; 23.x prints one per device)
_SLURMD_GRES = re.compile(r"\bGres Name=(\S+)\b.*?\bFile=(\S+)")


def parse_slurmd_gres(text: str, name: str = "gpu") -> list[str]:
    """The device files of GRES ``name`` in ``slurmd -G`` output (what slurmd itself found,
    gres.conf ``File=`` lines and ``AutoDetect`` alike), in order, without repeats."""
    from ..hostlist import expand

    out: list[str] = []
    for m in _SLURMD_GRES.finditer(text):
        if m.group(1) != name or m.group(2) == "(null)":
            continue
        out += [f for f in expand(m.group(2)) if f not in out]
    return out


@dataclass(frozen=True)
class GresDevices:
    """The device files a node's slurmd uses for a GRES, and where they were read."""

    node: str
    files: tuple[str, ...]
    source: str  # e.g. "gres.conf File= (/etc/slurm/gres.conf)" or "slurmd -G (AutoDetect)"


def gres_devices(node, name: str = "gpu") -> GresDevices:
    """The node's device files for GRES ``name``: gres.conf's ``File=`` lines for the node;
    where it gives none (``AutoDetect=nvml``, or files set elsewhere), what ``slurmd -G``
    reports (it runs slurmd's own detection and exits; it starts no daemon)."""
    conf = config_dir(node)
    r = node.run(f"cat {shlex.quote(conf)}/gres.conf", timeout=20)
    files = gres_files_for(parse_gres_conf(r.stdout), node.name, name) if r.ok else []
    if files:
        return GresDevices(node.name, tuple(files), f"gres.conf File= ({conf}/gres.conf)")
    probe = node.run(f"PATH=$PATH:/usr/sbin:/usr/local/sbin slurmd -G -N {shlex.quote(node.name)} "
                     f"-f {shlex.quote(conf)}/slurm.conf 2>&1", timeout=30, root=True)
    found = parse_slurmd_gres(probe.stdout, name)
    said = "gres.conf has no File= for it" if r.ok else f"no gres.conf in {conf}"
    why = "" if found or probe.ok else f"; slurmd -G failed: {probe.describe()}"
    return GresDevices(node.name, tuple(found), f"slurmd -G ({said}){why}")


def parse_config(text: str) -> dict[str, str]:
    """``scontrol show config`` as {key: value} (``Key  = value`` lines; other lines skipped)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and " " not in key.strip():
            out.setdefault(key.strip(), value.strip())
    return out


_VERSION = re.compile(r"\bslurm(?:-wlm)?\s+v?(\d+\.\d+\.\d+\S*)", re.I)


def parse_version(text: str) -> str | None:
    """``slurmd -V`` (``slurm-wlm 22.05.8``, ``slurm 24.11.5``) → ``22.05.8``."""
    m = _VERSION.search(text)
    return m.group(1) if m else None


#: the sbin directories (and /opt/slurm/sbin) added to PATH, where a login user's lacks them
SBIN_PATH = "PATH=$PATH:/usr/sbin:/usr/local/sbin:/sbin:/opt/slurm/sbin"


def installed_slurmd_version(node) -> tuple[str | None, str]:
    """(version, problem) of the slurmd the node has installed now (``slurmd -V``, PATH
    widened by :data:`SBIN_PATH`)."""
    r = node.run(f"{SBIN_PATH} slurmd -V", timeout=20)
    version = parse_version(r.stdout + r.stderr) if r.ok else None
    return version, "" if version else f"cannot tell its slurmd's version: {r.describe()}"


def version_problems(running: str, controller: str, installed: str | None) -> list[str]:
    """What is wrong with a node's Slurm release: the slurmd it registered with (``running``,
    scontrol's Version=) against slurmctld's (``controller``) and the installed one."""
    out = []
    if running != controller:
        out.append(f"its slurmd registered as Slurm {running or '(no version)'}, slurmctld runs {controller}: "
                   f"upgrade the node to the controller's release")
    if installed and installed != running:
        out.append(f"slurmd {running} is running but {installed} is installed (slurmd -V): restart slurmd there")
    return out


_PING = re.compile(r"^Slurmctld\((?P<role>[\w-]+)\) at (?P<host>\S+) is (?P<state>UP|DOWN)\b", re.M)


def parse_ping(text: str) -> list[tuple[str, str, str]]:
    """``scontrol ping`` → (role, host, UP|DOWN) per configured controller: ``primary``, then
    ``backup`` (or ``backup1``, ``backup2`` ... with several) in SlurmctldHost order."""
    return [(m["role"], m["host"], m["state"]) for m in _PING.finditer(text)]


def show_config(node) -> dict[str, str]:
    """The running Slurm configuration as ``node`` sees it ({} when scontrol fails)."""
    r = node.run("scontrol show config 2>/dev/null", timeout=30)
    return parse_config(r.stdout) if r.ok else {}


def config_value(node, key: str, default: str = "") -> str:
    return show_config(node).get(key, default)


#: the scripts slurmd runs on a compute node, and those slurmctld runs on the controller
NODE_SCRIPTS = ("Prolog", "Epilog", "TaskProlog", "TaskEpilog", "HealthCheckProgram")
CONTROLLER_SCRIPTS = ("PrologSlurmctld", "EpilogSlurmctld")


def scripts_run_on(node) -> tuple[str, ...]:
    """The script settings Slurm runs on ``node`` as root: slurmctld's on the controller,
    slurmd's on a compute node, none on a login node (no Slurm daemon there)."""
    return {"controller": CONTROLLER_SCRIPTS, "compute": NODE_SCRIPTS}.get(node.role, ())


def config_list(config: dict[str, str], key: str) -> list[str]:
    """The values of a list option: ``Key = a,b`` (Slurm 22.05) or ``Key[0] = a``,
    ``Key[1] = b`` (Slurm 23.02 and later print Prolog/Epilog so, one line per script);
    unset ones, ``(null)``, left out."""
    indexed = sorted((int(k[len(key) + 1:-1]), v) for k, v in config.items()
                     if k.startswith(key + "[") and k.endswith("]") and k[len(key) + 1:-1].isdigit())
    values = [config[key]] if key in config else [v for _, v in indexed]
    return [p.strip() for v in values for p in v.split(",") if p.strip() and p.strip() != "(null)"]


def configured_scripts(config: dict[str, str], keys: tuple[str, ...]) -> list[tuple[str, str]]:
    """(key, path) of every script the configuration names under ``keys`` (see config_list)."""
    return [(key, path) for key in keys for path in config_list(config, key)]


def capacity_command(tmpfs: str = "/tmp") -> str:
    """Prints the node's online CPUs (a list such as 0-63), its MemTotal in kB and the size in
    MiB of the filesystem holding ``tmpfs`` (slurm.conf's TmpFS), one per line."""
    return ("cat /sys/devices/system/cpu/online && "
            "sed -n 's/^MemTotal:[[:space:]]*\\([0-9]*\\).*/\\1/p' /proc/meminfo && "
            f"df -Pm {shlex.quote(tmpfs)} | awk 'NR == 2 {{print $2}}'")


@dataclass(frozen=True)
class NodeCapacity:
    """What a node has: its online CPUs (the list and their count), MemTotal in MiB and the
    size of its TmpFS in MiB."""

    cpulist: str
    cpus: int | None
    memory_mib: int | None
    tmp_mib: int | None = None


def parse_capacity(text: str) -> NodeCapacity:
    """The output of :func:`capacity_command`; a count that cannot be read is None."""
    lines = [line.strip() for line in text.splitlines() if line.strip()] + ["", "", ""]
    cpulist, memkb, tmp = lines[:3]
    return NodeCapacity(cpulist, count_list(cpulist), int(memkb) // 1024 if memkb.isdigit() else None,
                        int(tmp) if tmp.isdigit() else None)


def capacity_shortfalls(sn: SlurmNode, have: NodeCapacity, tmpfs: str = "/tmp") -> list[str]:
    """Where ``sn`` (slurmctld's record: what it gives jobs there) promises more than the node
    has: CPUTot over its online CPUs, RealMemory over its MemTotal, TmpDisk over the size of
    its TmpFS (where TmpDisk is set)."""
    out = []
    if have.cpus is not None and sn.cpus > have.cpus:
        out.append(f"CPUTot {sn.cpus} but {have.cpus} CPU(s) online (/sys/devices/system/cpu/online: {have.cpulist})")
    if have.memory_mib is not None and sn.real_memory_mb > have.memory_mib:
        out.append(f"RealMemory {sn.real_memory_mb} MiB but MemTotal {have.memory_mib} MiB")
    tmp_disk = leading_int(sn.raw.get("TmpDisk", "")) or 0
    if have.tmp_mib is not None and tmp_disk > have.tmp_mib:
        out.append(f"TmpDisk {tmp_disk} MiB but TmpFS {tmpfs} holds {have.tmp_mib} MiB")
    return out


@dataclass(frozen=True)
class Topology:
    """How a node's CPUs are laid out: boards, sockets (on all boards), cores per socket and
    threads per core, and the CPUs (logical processors) Slurm counts."""

    cpus: int
    boards: int
    sockets: int
    cores_per_socket: int
    threads_per_core: int

    @property
    def cores(self) -> int:
        return self.sockets * self.cores_per_socket

    @property
    def threads(self) -> int:
        return self.cores * self.threads_per_core

    def describe(self) -> str:
        return (f"Boards={self.boards} Sockets={self.sockets} CoresPerSocket={self.cores_per_socket} "
                f"ThreadsPerCore={self.threads_per_core}")

    def node_line(self) -> str:
        """The layout as slurm.conf's NodeName line spells it (and ``slurmd -C`` prints it)."""
        return (f"Boards={self.boards} SocketsPerBoard={self.sockets // max(1, self.boards)} "
                f"CoresPerSocket={self.cores_per_socket} ThreadsPerCore={self.threads_per_core}")


def _topology(kv: dict[str, str], cpus: str, sockets: str, per_board: bool) -> Topology | None:
    values = [leading_int(kv.get(key, "")) for key in (cpus, "Boards", sockets, "CoresPerSocket", "ThreadsPerCore")]
    if None in values:
        return None
    n, boards, socks, cores, threads = values
    return Topology(n, boards, socks * boards if per_board else socks, cores, threads)


#: prints the node's hardware as slurmd finds it (hwloc): the line slurm.conf should carry
HARDWARE_COMMAND = f"{SBIN_PATH} slurmd -C"


def parse_hardware(text: str) -> Topology | None:
    """``slurmd -C`` (``NodeName=c1 CPUs=64 Boards=1 SocketsPerBoard=2 CoresPerSocket=16
    ThreadsPerCore=2 RealMemory=…``) → its Topology; None where the line is not there."""
    line = next((ln for ln in text.splitlines() if ln.startswith("NodeName=")), "")
    return _topology(parse_oneliner(line), "CPUs", "SocketsPerBoard", per_board=True) if line else None


def declared_topology(sn: SlurmNode) -> Topology | None:
    """The layout slurmctld uses for a node (``scontrol show node``: CPUTot, Boards, Sockets,
    CoresPerSocket, ThreadsPerCore): slurm.conf's NodeName line, where CPUs= alone means one
    socket per CPU."""
    return _topology(sn.raw, "CPUTot", "Sockets", per_board=False)


def topology_differences(declared: Topology, hardware: Topology) -> list[str]:
    """``Key=declared, the hardware has N`` for each of sockets, cores per socket, threads per
    core and boards where Slurm's layout is not the hardware's."""
    pairs = (("Boards", declared.boards, hardware.boards), ("Sockets", declared.sockets, hardware.sockets),
             ("CoresPerSocket", declared.cores_per_socket, hardware.cores_per_socket),
             ("ThreadsPerCore", declared.threads_per_core, hardware.threads_per_core))
    return [f"{key}={want} (the hardware has {have})" for key, want, have in pairs if want != have]


def topology_consequence(declared: Topology, hardware: Topology) -> str:
    """What a layout that differs from the hardware does to jobs there, the worst first."""
    if declared.threads_per_core > hardware.threads_per_core:
        t = declared.threads_per_core
        return (f"Slurm allocates whole cores of {t} CPUs each: a one-CPU job is given {t} of the node's CPUs, "
                f"which the hardware has as separate cores, and the node runs 1/{t} of the one-CPU jobs it could")
    if declared.threads_per_core < hardware.threads_per_core:
        return ("Slurm takes hyperthreads for cores: `-c 2` may be two threads of one core, "
                "`--hint=nomultithread` and `--threads-per-core` mean nothing, and two jobs can share a core")
    return ("task/affinity lays tasks out on sockets and cores the hardware does not have: ranks meant for one "
            "socket's cores land across sockets, and `--sockets-per-node`/`--cores-per-socket` ask for "
            "what is not there (slurmd logs 'Node configuration differs from hardware')")


def cpus_granted(asked: int, layout: Topology | None, select_type_parameters: str) -> int:
    """How many CPUs Slurm gives a task asking for ``asked`` (``-c``) on a node of ``layout``:
    whole cores where it allocates cores (``CR_Core*``, and cons_tres without parameters) and a
    core has several threads (``-c 1`` on a node with SMT is given both threads of a core),
    whole sockets under ``CR_Socket*``, else ``asked`` (``CR_CPU*``, ``CR_Memory``). Where
    slurm.conf counts a node's cores as its CPUs (``CPUs=`` its cores, on a node with SMT),
    each of Slurm's CPUs is a core, and a task of ``asked`` runs on all its threads."""
    kind = select_type_parameters.split(",")[0].strip().upper()
    if layout is not None and layout.threads_per_core > 1 and layout.cpus == layout.cores:
        return asked * layout.threads_per_core
    if layout is None or kind.startswith("CR_CPU") or kind == "CR_MEMORY":
        return asked
    unit = layout.threads_per_core * (layout.cores_per_socket if kind.startswith("CR_SOCKET") else 1)
    return -(-asked // max(1, unit)) * max(1, unit)


def cpus_seen_problem(asked: int, seen, granted: int) -> str:
    """"" where a task of ``-c asked`` may run on the CPUs ``seen``: ``asked`` of them, or the
    ``granted`` whole cores (:func:`cpus_granted`) it was given; else what is wrong."""
    if len(seen) in (asked, granted):
        return ""
    also = f" (or {granted}: the whole cores Slurm grants on this node's layout)" if granted != asked else ""
    return f"-c {asked} sees {len(seen)} CPUs ({','.join(map(str, sorted(seen)))}), expected {asked}{also}"


def shown(config: dict[str, str], key: str) -> str:
    """``key=value`` of a running configuration for a message: Slurm's spellings of nothing
    (``(null)``, ``(null type)``, empty) as ``unset``."""
    value = config.get(key, "")
    return f"{key}={'unset' if value in ('', '(null)', '(null type)') else value}"


def srun_port_range(config: dict[str, str]) -> tuple[int, int] | None:
    """SrunPortRange (``60001-63000``) of a running configuration: the ports srun listens on for
    its tasks' I/O and PMI; None when unset (``0-0``: any port the kernel gives)."""
    m = re.fullmatch(r"\s*(\d+)-(\d+)\s*", config.get("SrunPortRange", ""))
    if not m or int(m.group(2)) == 0:
        return None
    return int(m.group(1)), int(m.group(2))


def mpi_default(config: dict[str, str]) -> str | None:
    """MpiDefault of a running configuration (``show_config``): ``none`` when MPI is off
    (Slurm 24.11 prints that as ``(null)``), None when it gives no value."""
    value = config.get("MpiDefault", "")
    return "none" if value == "(null)" else (value or None)


def script_problems(node, scripts: list[tuple[str, str]]) -> list[str]:
    """What is wrong with each script on ``node``: missing, not a file, not executable (a
    glob must match at least one executable file)."""
    if not scripts:
        return []
    checks = "\n".join(
        f'n=0; for f in {path}; do [ -e "$f" ] || continue; n=$((n+1)); '
        f'if [ ! -f "$f" ]; then echo "{key} $f not-a-file"; elif [ ! -x "$f" ]; then echo "{key} $f not-executable"; fi; '
        f'done; [ $n -gt 0 ] || echo "{key} {path} missing"'
        for key, path in scripts)
    r = node.run(checks, timeout=20, root=True)
    if not r.ok:
        return [f"checking {', '.join(p for _, p in scripts)} failed: {r.describe()}"]
    return [f"{key}={path}: {what.replace('-', ' ')}" for key, path, what in
            (line.split(" ", 2) for line in r.stdout.splitlines() if line.count(" ") >= 2)]


@dataclass(frozen=True)
class FileMode:
    path: str
    kind: str  # "file" or "directory"
    uid: int
    gid: int
    mode: int  # permission bits, with setuid/setgid/sticky
    owner: str
    group: str


def file_modes(node, paths: list[str]) -> list[FileMode]:
    """Owner, group and mode of each existing path (globs expanded, symlinks followed) and of
    the directory holding it, on ``node``, once each."""
    if not paths:
        return []
    words = " ".join(paths)  # globs: left for the shell to expand
    r = node.run(f'for f in {words}; do [ -e "$f" ] && printf "%s\\n%s\\n" "$f" "$(dirname "$f")"; done '
                 "| sort -u | while read -r f; do stat -L -c '%F|%u|%g|%a|%U|%G|%n' \"$f\"; done", timeout=20)
    out = []
    for line in r.stdout.splitlines():
        parts = line.split("|", 6)
        if len(parts) == 7 and parts[1].isdigit() and parts[2].isdigit():
            kind, uid, gid, mode, owner, group, path = parts
            out.append(FileMode(path, "directory" if kind == "directory" else "file", int(uid), int(gid),
                                int(mode, 8), owner, group))
    return out


def slurm_user_uid(config: dict[str, str]) -> int | None:
    """SlurmUser's uid from a running configuration (``SlurmUser = slurm(64030)``)."""
    m = re.search(r"\((\d+)\)", config.get("SlurmUser", ""))
    return int(m.group(1)) if m else None


def unsafe_modes(files: list[FileMode], trusted_uids: set[int]) -> list[str]:
    """Each of ``files`` that a user other than root or SlurmUser (``trusted_uids``) can change:
    owned by another user, writable by every user (a directory with the sticky bit excepted:
    others cannot replace what is in it), or writable by a group other than root's."""
    out = []
    for f in files:
        why = []
        if f.uid not in trusted_uids:
            why.append(f"owned by {f.owner} (uid {f.uid})")
        if f.mode & 0o002 and not (f.kind == "directory" and f.mode & 0o1000):
            why.append("writable by every user")
        elif f.mode & 0o020 and f.gid != 0:
            why.append(f"writable by group {f.group}")
        if why:
            out.append(f"{f.kind} {f.path} ({f.mode & 0o7777:04o} {f.owner}:{f.group}) " + " and ".join(why))
    return out


@dataclass(frozen=True)
class ConfigDigest:
    node: str
    path: str
    sha256: str | None
    error: str = ""


def config_digest(node) -> ConfigDigest:
    """The SHA-256 of the slurm.conf the node's Slurm commands read."""
    path = f"{config_dir(node)}/slurm.conf"
    r = node.run(f"sha256sum {shlex.quote(path)}", timeout=20)
    digest = r.stdout.split()[0] if r.ok and r.stdout.split() else None
    return ConfigDigest(node.name, path, digest, "" if digest else r.describe())


def state_dir(config: dict[str, str], node) -> tuple[str, str]:
    """(setting, path) of the directory Slurm keeps its state in on ``node``: the controller's
    StateSaveLocation, a compute node's SlurmdSpoolDir (``%n``/``%h`` filled in)."""
    if node.role == "controller":
        return "StateSaveLocation", config.get("StateSaveLocation", "/var/spool/slurmctld")
    path = config.get("SlurmdSpoolDir", "/var/spool/slurmd")
    return "SlurmdSpoolDir", path.replace("%n", node.name).replace("%h", node.name)


def config_dir(node) -> str:
    """The directory of the slurm.conf the node uses (``scontrol show config``'s SLURM_CONF)."""
    path = config_value(node, "SLURM_CONF") or "/etc/slurm/slurm.conf"
    return path.rsplit("/", 1)[0]


_JOB_ID_LINE = re.compile(r"^HPCV_JOB_ID=(\d+)$", re.M)


def srun_job(controller, args: str, command: str, timeout: float = 60.0) -> tuple[JobInfo | None, CommandResult]:
    """Run ``command`` as a one-step interactive job (``srun``) and read the job's final record.

    Quicker than ``sbatch`` (no wait for the scheduler's next pass) and the job's end state
    (COMPLETED, OUT_OF_MEMORY, FAILED ...) is what Slurm recorded for the allocation.
    """
    result = srun(controller, args, f'echo "HPCV_JOB_ID=$SLURM_JOB_ID"; {command}', timeout=timeout)
    m = _JOB_ID_LINE.search(result.stdout)
    if not m:
        return None, result
    return wait_job(controller, int(m.group(1)), timeout=timeout), result
