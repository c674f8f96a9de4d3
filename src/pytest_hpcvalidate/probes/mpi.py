"""MPI facts: build the shipped check program on the cluster and read what its ranks report.

The program is ``suites/l4_mpi/src/mpi_check.c``; its output format is documented there.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ..transport import CommandResult

SOURCE = Path(__file__).resolve().parents[3] / "suites" / "l4_mpi" / "src" / "mpi_check.c"

#: srun's option for an MPI step: a rank that dies (or fails MPI_Init) ends the step at once,
#: instead of its peers waiting for it in MPI_Init or a collective until a timeout
KILL_ON_BAD_EXIT = "--kill-on-bad-exit=1"

_RANK = re.compile(r"^RANK (\d+) OF (\d+) ON (\S+)$", re.M)
_ALLREDUCE = re.compile(r"^ALLREDUCE (-?\d+) EXPECTED (-?\d+)$", re.M)
_LATENCY = re.compile(r"^LATENCY_US ([\d.]+)$", re.M)
_BANDWIDTH = re.compile(r"^BANDWIDTH_MIBPS ([\d.]+)$", re.M)


@dataclass(frozen=True)
class RankReport:
    """What ``mpi_check ranks`` printed."""

    ranks: dict[int, str] = field(default_factory=dict)  # rank -> host
    sizes: frozenset[int] = frozenset()  # world sizes the ranks reported (should be one)
    allreduce: tuple[int, int] | None = None  # (got, expected)

    def per_host(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for host in self.ranks.values():
            out[host] = out.get(host, 0) + 1
        return out

    def problems(self, ntasks: int, hosts: list[str]) -> list[str]:
        """What differs from ``ntasks`` ranks spread over ``hosts`` with a correct allreduce."""
        out = []
        missing = sorted(set(range(ntasks)) - set(self.ranks))
        if missing:
            out.append(f"ranks {missing} did not report (got {len(self.ranks)} of {ntasks})")
        if self.sizes and self.sizes != {ntasks}:
            out.append(f"ranks report world size {sorted(self.sizes)}, expected {ntasks}")
        where = self.per_host()
        if set(where) != set(hosts):
            out.append(f"ranks ran on {sorted(where)}, expected {sorted(hosts)}")
        if self.allreduce is None:
            out.append("rank 0 printed no allreduce result")
        elif self.allreduce[0] != self.allreduce[1]:
            out.append(f"allreduce sum is {self.allreduce[0]}, expected {self.allreduce[1]}")
        return out


def parse_ranks(text: str) -> RankReport:
    ranks, sizes = {}, set()
    for m in _RANK.finditer(text):
        ranks[int(m.group(1))] = m.group(3)
        sizes.add(int(m.group(2)))
    m = _ALLREDUCE.search(text)
    return RankReport(ranks, frozenset(sizes), (int(m.group(1)), int(m.group(2))) if m else None)


@dataclass(frozen=True)
class PingPong:
    latency_us: float | None
    bandwidth_mibps: float | None


def parse_pingpong(text: str) -> PingPong:
    lat, bw = _LATENCY.search(text), _BANDWIDTH.search(text)
    return PingPong(float(lat.group(1)) if lat else None, float(bw.group(1)) if bw else None)


def build(node, directory: str, timeout: float = 120.0) -> tuple[str, CommandResult]:
    """Compile the check program on ``node`` into ``directory`` (seen by every compute node).

    The source travels in the command (a heredoc), so nothing but ``mpicc`` is needed on the
    node. Returns (binary path, compile result).
    """
    binary = f"{directory.rstrip('/')}/mpi_check"
    src = SOURCE.read_text()
    cmd = (
        f"mkdir -p {shlex.quote(directory)} && cat > {shlex.quote(binary)}.c <<'HPCV_EOF'\n{src}HPCV_EOF\n"
        f"mpicc -O2 -o {shlex.quote(binary)} {shlex.quote(binary)}.c"
    )
    return binary, node.run(cmd, timeout=timeout)


def plugin_types(text: str) -> list[str]:
    """``srun --mpi=list`` output → plugin names (``pmix``, ``none``, ``pmi2``, ``pmix_v4`` ...).

    Slurm prints a header, one indented name per line, then ``specific pmix plugin versions
    available: pmix_v4[,pmix_v5]``; older releases prefix lines with ``srun: ``.
    """
    names: list[str] = []
    for line in text.splitlines():
        line = line.removeprefix("srun: ")
        if "versions available:" in line:
            names += [v.strip() for v in line.split(":", 1)[1].split(",") if v.strip()]
        elif line[:1] in (" ", "\t") and re.fullmatch(r"[a-z][a-z0-9_]*", line.strip()):
            names.append(line.strip())
    return names


def mpirun_script(binary: str, *args: str) -> str:
    """A batch script running ``binary`` with Open MPI's ``mpirun`` over the job's allocation
    (output and errors to the job's output file). Open MPI refuses to run as root unless told:
    clusters the run made are reached as root."""
    argv = " ".join(shlex.quote(a) for a in (binary, *args))
    return ("#!/bin/sh\n"
            'if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi\n'
            f"exec mpirun {argv} 2>&1\n")
