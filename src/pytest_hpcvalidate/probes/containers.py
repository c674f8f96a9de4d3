"""Container runtimes under Slurm: which runtime a node has, how to run a program in the image,
what the image is (digest, OS), and what a containerised step saw.

The production form is ``srun … apptainer exec [--nv] IMAGE cmd``; charliecloud's
``srun … ch-run IMAGE -- cmd`` has the same shape, and Slurm's own OCI support runs the step's
command in a bundle with ``srun --container=BUNDLE cmd``. :class:`Runtime` hides those three
shapes behind one ``srun_options()`` + ``wrap(command)`` pair, so a check is written once.

Everything that runs on a node is POSIX sh + coreutils/findutils; the parsers are pure and
tested against recorded outputs (``fixtures/containers/``).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from ..transport import CommandResult
from . import slurm

#: config runtime name -> the program that must be on every compute node
PROGRAMS = {"apptainer": "apptainer", "singularity": "singularity", "charliecloud": "ch-run", "slurm-oci": "runc"}

#: exit status of a process killed by SIGKILL (what an OOM kill looks like through runc)
SIGKILL_EXIT = 137


# --------------------------------------------------------------------------- runtime version
def version_command(runtime: str) -> str:
    """Prints the runtime's version (charliecloud's ch-run refuses to start without ``$USER``)."""
    program = PROGRAMS[runtime]
    return f'export USER="${{USER:-$(id -un)}}"; command -v {program} >/dev/null || {{ echo "NOT FOUND {program}"; exit 127; }}; ' \
           f"{program} --version 2>&1"


_VERSION = re.compile(r"(\d+(?:\.\d+){0,3})")


def parse_version(text: str) -> str | None:
    """``apptainer version 1.4.2`` / ``singularity-ce version 4.1.0-jammy`` / ``0.31`` (ch-run) /
    ``runc version 1.1.5+ds1`` → the dotted version; None when there is none."""
    for line in text.splitlines():
        if "NOT FOUND" in line or "error" in line.lower():
            continue
        m = _VERSION.search(line.split("version", 1)[-1])
        if m:
            return m.group(1)
    return None


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def at_least(have: str, want: str) -> bool:
    """``1.4.10`` ≥ ``1.4.2`` (numeric, missing parts are 0)."""
    a, b = version_tuple(have), version_tuple(want)
    n = max(len(a), len(b))
    return a + (0,) * (n - len(a)) >= b + (0,) * (n - len(b))


# --------------------------------------------------------------------------- running in the image
@dataclass(frozen=True)
class Runtime:
    """One runtime and image: how a Slurm step runs a shell command inside the image."""

    kind: str  # apptainer | singularity | charliecloud | slurm-oci
    image: str  # SIF file / directory image / OCI bundle, same path on every compute node
    binds: tuple[str, ...] = ()  # host paths bound at the same path inside

    def srun_options(self) -> str:
        """srun options the runtime needs (Slurm's OCI support is an srun option)."""
        return f"--container={shlex.quote(self.image)}" if self.kind == "slurm-oci" else ""

    def prefix(self, gpu: bool = False) -> str:
        """The words that run a program in the image (empty for slurm-oci: srun does it)."""
        img = shlex.quote(self.image)
        if self.kind in ("apptainer", "singularity"):
            binds = f" -B {shlex.quote(','.join(self.binds))}" if self.binds else ""
            return f"{self.kind} exec{' --nv' if gpu else ''}{binds} {img}"
        if self.kind == "charliecloud":
            binds = "".join(f" -b {shlex.quote(b)}" for b in self.binds)
            return f"ch-run{binds} {img} --"
        return ""

    def wrap(self, command: str, gpu: bool = False) -> str:
        """A host shell command that runs the shell ``command`` inside the image."""
        if self.kind == "slurm-oci":
            return command  # srun --container already runs /bin/sh -c COMMAND in the bundle
        user = 'export USER="${USER:-$(id -un)}"; ' if self.kind == "charliecloud" else ""
        return f"{user}exec {self.prefix(gpu)} /bin/sh -c {shlex.quote(command)}"


def with_shared_dir(binds: list[str], shared_dir) -> list[str]:
    """``binds`` plus the cluster's shared directory (where jobs' programs live) unless a bind
    already covers it."""
    out = [str(b) for b in binds]
    shared = str(shared_dir) if shared_dir is not None else None
    if shared and not any(shared == b or shared.startswith(b.rstrip("/") + "/") for b in out):
        out.append(shared)
    return out


def runtime_from_config(containers, shared_dir) -> Runtime:
    """The :class:`Runtime` of a config's ``containers`` section (shared directory bound)."""
    return Runtime(containers.runtime, str(containers.image), tuple(with_shared_dir(containers.binds, shared_dir)))


def srun(controller, rt: Runtime, args: str, command: str, timeout: float, gpu: bool = False) -> CommandResult:
    """``srun ARGS`` running ``command`` inside ``rt``'s image on the allocated node(s)."""
    return slurm.srun(controller, f"{args} {rt.srun_options()}".strip(), rt.wrap(command, gpu), timeout=timeout)


# --------------------------------------------------------------------------- what a step saw
#: printed inside the container, before isolation.STEP_FACTS: the OS the step runs on, its rank
def pretty_name_command(path: str) -> str:
    """Shell that prints the PRETTY_NAME of the os-release file at ``path`` (a shell word)."""
    return f"sed -n 's/^PRETTY_NAME=//p' {path} 2>/dev/null | tr -d '\\042\\047'"


#: printed inside the container: the OS the step runs on and its rank
IDENTITY = f'echo "OSREL $({pretty_name_command("/etc/os-release")})"; echo "PROCID ${{SLURM_PROCID-unset}}"'

_LABEL = re.compile(r"^\s*(\d+): ?(.*)$")


def task_lines(text: str) -> dict[int, list[str]]:
    """``srun -l`` output grouped by task label; unlabelled output counts as task 0."""
    out: dict[int, list[str]] = {}
    for line in text.splitlines():
        m = _LABEL.match(line)
        task, rest = (int(m.group(1)), m.group(2)) if m else (0, line)
        out.setdefault(task, []).append(rest)
    return out


@dataclass(frozen=True)
class Identity:
    os_release: str | None  # PRETTY_NAME seen inside
    procid: str | None  # SLURM_PROCID inside ('unset' → None)


def parse_identity(lines: list[str]) -> Identity:
    osrel = procid = None
    for line in lines:
        key, _, value = line.partition(" ")
        if key == "OSREL":
            osrel = value.strip() or None
        elif key == "PROCID":
            procid = None if value.strip() == "unset" else value.strip()
    return Identity(osrel, procid)


def parse_os_release(text: str) -> dict[str, str]:
    """/etc/os-release → {KEY: value} (quotes removed)."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            out[key] = value.strip().strip('"').strip("'")
    return out


def oom_killed(result: CommandResult, state: str | None = None) -> bool:
    """Whether a step was killed for exceeding its memory. Slurm says "Out Of Memory" (or the job
    ends OUT_OF_MEMORY) when its cgroup catches it; through runc it only shows as exit 137
    (SIGKILL), which is the only signal Slurm's OCI path gives."""
    from .isolation import oom_reported

    text = f"{result.stdout}\n{result.stderr}"
    return (state == "OUT_OF_MEMORY" or oom_reported(text) or result.exit_code == SIGKILL_EXIT
            or "exit code 137" in text)


# --------------------------------------------------------------------------- the image
def image_check_command(image: str) -> str:
    """Prints ``KIND file|dir|missing`` and ``READ ok|<error>`` for the image at ``image``, and
    for a directory image (or an OCI bundle's rootfs) its ``OSREL`` and whether it has a shell."""
    q = shlex.quote(image)
    return (
        f"i={q}; if [ -f \"$i\" ]; then echo 'KIND file'; "
        "if e=$(head -c 1 \"$i\" 2>&1 >/dev/null); then echo 'READ ok'; else echo \"READ $e\"; fi; "
        "elif [ -d \"$i\" ]; then echo 'KIND dir'; r=\"$i\"; [ -d \"$i/rootfs\" ] && [ -f \"$i/config.json\" ] && r=\"$i/rootfs\"; "
        "if e=$(ls \"$r\" 2>&1 >/dev/null); then echo 'READ ok'; else echo \"READ $e\"; fi; "
        "[ -x \"$r/bin/sh\" ] && echo 'SHELL yes' || echo 'SHELL no'; "
        "f=\"$r/etc/os-release\"; [ -e \"$f\" ] || f=\"$r/usr/lib/os-release\"; "
        "echo \"OSREL $(" + pretty_name_command('"$f"') + ")\"; "
        "else echo 'KIND missing'; fi"
    )


@dataclass(frozen=True)
class ImageFacts:
    kind: str  # file | dir | missing
    readable: str | None = None  # 'ok' or the error
    shell: bool = False
    os_release: str | None = None

    def problem(self) -> str | None:
        """What makes the image unusable, or None."""
        if self.kind == "missing":
            return "missing (no such file or directory)"
        if self.readable != "ok":
            return f"not readable ({self.readable or 'no answer'})"
        if self.kind == "dir" and not self.shell:
            return "a directory without /bin/sh (empty, or not an image)"
        if self.kind == "dir" and not self.os_release:
            return "a directory without an os-release PRETTY_NAME (empty, or not an image)"
        return None


def parse_image_check(text: str) -> ImageFacts:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key in ("KIND", "READ", "SHELL", "OSREL") and key not in fields:
            fields[key] = value.strip()
    return ImageFacts(fields.get("KIND", "missing"), fields.get("READ"), fields.get("SHELL") == "yes",
                      fields.get("OSREL") or None)


def digest_command(image: str) -> str:
    """Prints ``DIGEST <sha256>`` of the image: a file's sha256 (a SIF), or for a directory a
    digest over its tree: every entry's type, mode, path and link target, plus every regular
    file's sha256, sorted. Mounts *below* the image (a host /usr bound into a skeleton image)
    are not part of it, so the digest is the image's own content wherever it is placed.
    Exits non-zero, printing the error, when anything cannot be read."""
    q = shlex.quote(image)
    return (
        f"i={q}; if [ -f \"$i\" ]; then s=$(sha256sum < \"$i\") || exit 3; echo \"DIGEST ${{s%% *}}\"; exit 0; fi; "
        "cd \"$i\" || exit 3; r=$(pwd -P); set --; "
        "for m in $(awk -v r=\"$r\" 'substr($5,1,length(r)+1)==r\"/\" {print substr($5,length(r)+1)}' /proc/self/mountinfo); "
        "do set -- \"$@\" -path \".$m\" -prune -o; done; "
        "m=$(LC_ALL=C find . \"$@\" -printf '%y %m %p %l\\n' | LC_ALL=C sort) || exit 3; "
        "s=$(LC_ALL=C find . \"$@\" -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum) || exit 3; "
        "d=$(printf '%s\\n%s\\n' \"$m\" \"$s\" | sha256sum); echo \"DIGEST ${d%% *}\""
    )


_DIGEST = re.compile(r"^DIGEST ([0-9a-f]{64})$", re.M)


def parse_digest(text: str) -> str | None:
    m = _DIGEST.search(text)
    return m.group(1) if m else None


def image_digest(node, image: str, timeout: float = 120.0) -> tuple[str | None, CommandResult]:
    r = node.run(digest_command(image), timeout=timeout)
    return (parse_digest(r.stdout) if r.ok else None), r


def memory_hog_command(mib: int) -> str:
    """A shell command that needs about ``mib`` MiB at once (tail buffers the newline-free line)."""
    return f"head -c {int(mib)}m /dev/zero | tail -n 1 > /dev/null"


# --------------------------------------------------------------------------- torch in the image
TORCH_SCRIPT = Path(__file__).resolve().parents[3] / "suites" / "l4_containers" / "src" / "torch_check.py"

_TORCH = re.compile(r"^TORCH (\S+) RANK (\d+) OF (\d+) ON (\S+) CUDA (True|False) PYTHON (\S+)$", re.M)
_MATMUL = re.compile(r"^MATMUL (\S+)$", re.M)
_TORCH_ALLREDUCE = re.compile(r"^ALLREDUCE (-?\d+) EXPECTED (-?\d+)$", re.M)


@dataclass(frozen=True)
class TorchRank:
    version: str
    rank: int
    world: int
    host: str
    cuda: bool
    python: str


@dataclass(frozen=True)
class TorchReport:
    ranks: dict[int, TorchRank]
    matmul: list[str]  # 'ok' or the error, one per rank that got that far
    allreduce: list[tuple[int, int]]  # (got, expected) per rank

    def problems(self, ntasks: int, hosts: list[str]) -> list[str]:
        out = []
        missing = sorted(set(range(ntasks)) - set(self.ranks))
        if missing:
            out.append(f"ranks {missing} did not start torch (got {len(self.ranks)} of {ntasks})")
        worlds = {r.world for r in self.ranks.values()}
        if worlds and worlds != {ntasks}:
            out.append(f"ranks see world size {sorted(worlds)} from Slurm, expected {ntasks}")
        where = sorted({r.host for r in self.ranks.values()})
        if self.ranks and where != sorted(hosts):
            out.append(f"ranks ran on {where}, expected {sorted(hosts)}")
        bad = [m for m in self.matmul if m != "ok"]
        if len(self.matmul) < ntasks or bad:
            out.append(f"matmul: {len(self.matmul) - len(bad)} of {ntasks} ranks correct" + (f" (errors {bad})" if bad else ""))
        wrong = [f"{g} (expected {e})" for g, e in self.allreduce if g != e]
        if len(self.allreduce) < ntasks or wrong:
            out.append(f"all-reduce: {len(self.allreduce)} of {ntasks} ranks finished" + (f", sums {wrong}" if wrong else ""))
        return out


def parse_torch(text: str) -> TorchReport:
    ranks = {}
    for m in _TORCH.finditer(text):
        ranks[int(m.group(2))] = TorchRank(m.group(1), int(m.group(2)), int(m.group(3)), m.group(4),
                                           m.group(5) == "True", m.group(6))
    return TorchReport(ranks, _MATMUL.findall(text), [(int(g), int(e)) for g, e in _TORCH_ALLREDUCE.findall(text)])


def install_torch_script(node, directory: str, timeout: float = 30.0) -> tuple[str, CommandResult]:
    """Copy :data:`TORCH_SCRIPT` into ``directory`` (seen by every node) through ``node``."""
    path = f"{directory.rstrip('/')}/torch_check.py"
    cmd = (f"mkdir -p {shlex.quote(directory)} && cat > {shlex.quote(path)} <<'HPCV_EOF'\n"
           f"{TORCH_SCRIPT.read_text()}HPCV_EOF\n")
    return path, node.run(cmd, timeout=timeout)
