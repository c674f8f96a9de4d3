"""The software a cluster really runs, read from its nodes: kernel, OS, Slurm, munge,
Open MPI, PMIx, GPU model and driver. It goes into the fingerprint (Allure's Environment,
the sign-off), so a report says what was tested, not what the config hoped for.

One POSIX ``sh`` script runs on every node at once (``Cluster.run_all``) and prints each
tool's own version output under an ``@@name`` line; :func:`parse` turns that text into
``{fact: value}`` and :func:`merge` folds the nodes together (``22.05.8`` when every node
agrees, else ``22.05.8 on c[1-3]; 23.02.1 on c4``, which is how version drift shows up).
A tool that is not installed leaves its fact out for that node.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from typing import Mapping

#: per fact, the commands tried in order; the first that prints something wins
PROBES: dict[str, tuple[str, ...]] = {
    "kernel": ("uname -r",),
    "os": ('. /etc/os-release && echo "$PRETTY_NAME"',),
    "slurm": ("slurmd -V", "slurmctld -V", "srun --version"),
    "munge": ("munged --version",),
    "openmpi": ("ompi_info --version", "mpirun --version"),
    "pmix": ("pmix_info --version", "pkg-config --modversion pmix",
             "dpkg-query -W -f='${Version}' libpmix2", "dpkg-query -W -f='${Version}' libpmix2t64",  # Debian 13
             "rpm -q --qf '%{VERSION}' pmix"),
    "gpu": ("nvidia-smi --query-gpu=name,driver_version --format=csv",),
}

#: how long the whole script may take on one node
TIMEOUT_S = 30.0


def _quote(command: str) -> str:
    return "'" + command.replace("'", "'\\''") + "'"


def script() -> str:
    """The shell script that prints every probe's output under its ``@@fact`` line."""
    lines = [
        "first() { for c in \"$@\"; do o=$(eval \"$c\" 2>/dev/null) && [ -n \"$o\" ] && "
        "{ printf '%s\\n' \"$o\"; return 0; }; done; return 0; }",
    ]
    for fact, commands in PROBES.items():
        lines.append(f"echo @@{fact}; first {' '.join(_quote(c) for c in commands)}")
    return "\n".join(lines) + "\n"


def _sections(text: str) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@@"):
            current = line[2:].strip()
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return {k: "\n".join(v).strip() for k, v in out.items()}


_VERSION = {
    "slurm": re.compile(r"\bslurm(?:-wlm)?\s+v?(\d+\.\d+\S*)", re.I),
    "munge": re.compile(r"\bmunge-(\d+\.\d+\S*)", re.I),
    "openmpi": re.compile(r"\bOpen MPI\)?\s+v?(\d+\.\d+\S*)", re.I),
    "pmix": re.compile(r"(?:^|\s|\()v?(\d+\.\d+[\w.:~+-]*)"),
}


def gpus(text: str) -> list[tuple[str, str]]:
    """(model, driver) per GPU from ``nvidia-smi --query-gpu=...,name,...,driver_version
    --format=csv`` (columns found by their header, so more columns do no harm)."""
    rows = list(csv.reader(io.StringIO(text.strip()), skipinitialspace=True))
    if len(rows) < 2:
        return []
    header = [h.strip().lower() for h in rows[0]]
    if "name" not in header or "driver_version" not in header:
        return []
    i, j = header.index("name"), header.index("driver_version")
    return [(r[i].strip(), r[j].strip()) for r in rows[1:] if len(r) > max(i, j)]


def parse(text: str) -> dict[str, str]:
    """``{fact: value}`` of one node from the script's output."""
    facts: dict[str, str] = {}
    for fact, body in _sections(text).items():
        if not body:
            continue
        if fact in _VERSION:
            m = _VERSION[fact].search(body)
            if m:
                facts[fact] = m.group(1)
        elif fact == "gpu":
            found = gpus(body)
            if found:
                models = Counter(model for model, _ in found)
                facts["gpu_model"] = ", ".join(f"{n}x {model}" if n > 1 else model for model, n in models.items())
                facts["gpu_driver"] = ", ".join(dict.fromkeys(driver for _, driver in found))
        else:
            facts[fact] = body.splitlines()[0].strip()
    return facts


def merge(per_node: Mapping[str, Mapping[str, object]], nodes: list[str] | None = None) -> dict[str, str]:
    """One value per fact across nodes: the value when every node that has the fact agrees,
    else ``value on <hostlist>; other on <hostlist>`` (most common first)."""
    from ..hostlist import compress

    order = list(nodes) if nodes is not None else list(per_node)
    by_fact: dict[str, dict[str, list[str]]] = {}
    for node in order:
        for fact, value in (per_node.get(node) or {}).items():
            by_fact.setdefault(str(fact), {}).setdefault(str(value), []).append(node)
    out: dict[str, str] = {}
    for fact, values in by_fact.items():
        if len(values) == 1:
            out[fact] = next(iter(values))
        else:
            ranked = sorted(values.items(), key=lambda kv: -len(kv[1]))
            out[fact] = "; ".join(f"{value} on {compress(names)}" for value, names in ranked)
    return out


def gather(cluster) -> dict[str, str]:
    """Run the script on every node of ``cluster`` (concurrently) and merge the facts.
    Nodes that cannot be read are named under ``facts_unreadable``."""
    from ..transport import TransportError

    names = [n.name for n in cluster.nodes]
    try:
        results = cluster.run_all(script(), timeout=TIMEOUT_S)
    except TransportError as exc:
        return {"facts_unreadable": str(exc)}
    per_node = {name: parse(r.stdout) for name, r in results.items() if r.stdout}
    facts = merge(per_node, names)
    unreadable = [name for name in names if name not in per_node]
    if unreadable:
        from ..hostlist import compress

        facts["facts_unreadable"] = compress(unreadable)
    return facts
