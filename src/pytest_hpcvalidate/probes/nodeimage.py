"""What software a node runs: its kernel, its OS release and its installed packages.

Compute nodes are meant to be one image. A node reinstalled from an older image, or left out
of an update, runs another kernel, Open MPI, PMIx or munge than its peers: jobs fail only
when they land on it, or only across it and another node. This module reads each node's
kernel release (``/proc/sys/kernel/osrelease``, what ``uname -r`` prints), ``/etc/os-release``
and its package list (``dpkg-query`` on Debian/Ubuntu, ``rpm`` on RHEL-likes), and
:func:`differences` says where nodes differ from the others.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from dataclasses import dataclass, field

from ..hostlist import fold

#: prints ``KERNEL``, ``OS``, ``TOOL`` and one ``PKG<TAB>name<TAB>version`` per installed package
COMMAND = r"""
echo "KERNEL $(cat /proc/sys/kernel/osrelease)"
( . /etc/os-release 2>/dev/null; echo "OS ${PRETTY_NAME:-unknown}" )
if command -v dpkg-query >/dev/null 2>&1; then
  echo "TOOL dpkg"
  dpkg-query -W -f='${db:Status-Abbrev}\t${binary:Package}\t${Version}\n' | sed -n 's/^ii *\t/PKG\t/p'
elif command -v rpm >/dev/null 2>&1; then
  echo "TOOL rpm"
  rpm -qa --qf 'PKG\t%{NAME}.%{ARCH}\t%{EPOCH}:%{VERSION}-%{RELEASE}\n' | sed 's/\t(none):/\t/'
else
  echo "TOOL none"
fi
"""

#: a node's message lists at most this many packages of each kind, then how many more
SHOWN = 8


@dataclass(frozen=True)
class NodeImage:
    node: str
    kernel: str = ""
    os: str = ""
    tool: str = ""  # dpkg | rpm | none
    packages: dict[str, str] = field(default_factory=dict)  # name -> version


def parse(node: str, text: str) -> NodeImage:
    """The output of :data:`COMMAND` on ``node``."""
    values = {"kernel": "", "os": "", "tool": ""}
    packages: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("PKG\t"):
            _, name, version = (line.split("\t") + ["", ""])[:3]
            if name:
                packages[name] = version
            continue
        key, _, value = line.partition(" ")
        if key.lower() in values:
            values[key.lower()] = value.strip()
    return NodeImage(node, packages=packages, **values)


def read(node) -> NodeImage:
    """The node's image facts (see :data:`COMMAND`); a failed read raises with the node's answer."""
    r = node.run(COMMAND, timeout=60)
    image = parse(node.name, r.stdout)
    if not r.ok or not image.kernel:
        raise RuntimeError(f"{node.name}: could not read its kernel and packages: {r.describe()}")
    return image


def _listed(items: list[str]) -> str:
    head = ", ".join(items[:SHOWN])
    return head + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def _odd_ones(values: dict[str, str]) -> dict[str, str]:
    """{node: how the others differ} for the nodes whose value is not the one most nodes have
    (every node, when no one value is the most common)."""
    counts = Counter(values.values())
    if len(counts) < 2:
        return {}
    (top, n), (_, second) = counts.most_common(2)
    majority = top if n > second else None
    out = {}
    for node, value in values.items():
        if value != majority:
            others = {}
            for other, v in values.items():
                if v != value:
                    others.setdefault(v, []).append(other)
            out[node] = "; ".join(f"{v or 'none'} on {fold(nodes)}" for v, nodes in others.items())
    return out


def differences(images: dict[str, NodeImage], groups: dict[str, str],
                ignore: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """{node: [how it differs]} for the nodes that differ from the others.

    - kernel release and OS: compared over all the given nodes;
    - a package's version: over the nodes that have it installed (a node with another
      version than most, or every node when no version is the most common);
    - which packages are installed: within each group (``groups``: node → group, e.g. the
      config's ``compute[0]``), whose nodes are meant to be one image; a GPU group may carry
      packages a CPU group does not.

    Packages matching a pattern of ``ignore`` (fnmatch, e.g. ``site-node-id*``) are left out.
    A node whose package tool differs, or has none, is judged on its kernel and OS only.
    """
    problems: dict[str, list[str]] = {n: [] for n in images}
    for label, attr in (("kernel", "kernel"), ("OS", "os")):
        for node, others in _odd_ones({n: getattr(i, attr) for n, i in images.items()}).items():
            problems[node].append(f"{label} {getattr(images[node], attr)} ({others})")

    tools = Counter(i.tool for i in images.values() if i.tool not in ("", "none"))
    tool = tools.most_common(1)[0][0] if tools else None
    listed = {n: {p: v for p, v in i.packages.items() if not any(fnmatch.fnmatch(p, g) for g in ignore)}
              for n, i in images.items() if tool and i.tool == tool}

    versions: dict[str, list[str]] = {n: [] for n in listed}
    for pkg in sorted({p for pkgs in listed.values() for p in pkgs}):
        have = {n: pkgs[pkg] for n, pkgs in listed.items() if pkg in pkgs}
        for node, others in _odd_ones(have).items():
            versions[node].append(f"{pkg} {have[node]} ({others})")

    missing: dict[str, list[str]] = {n: [] for n in listed}
    extra: dict[str, list[str]] = {n: [] for n in listed}
    members: dict[str, list[str]] = {}
    for n in listed:
        members.setdefault(groups.get(n, ""), []).append(n)
    for nodes in members.values():
        if len(nodes) < 2:
            continue
        for pkg in sorted({p for n in nodes for p in listed[n]}):
            for node in _odd_ones({n: "installed" if pkg in listed[n] else "" for n in nodes}):
                has = pkg in listed[node]
                them = fold(n for n in nodes if (pkg in listed[n]) != has)
                (extra if has else missing)[node].append(f"{pkg} ({'not on' if has else 'on'} {them})")

    for n in listed:
        if versions[n]:
            problems[n].append(f"{len(versions[n])} package version(s) differ: {_listed(versions[n])}")
        if missing[n]:
            problems[n].append(f"lacks {len(missing[n])} package(s) other nodes of its group have: {_listed(missing[n])}")
        if extra[n]:
            problems[n].append(f"has {len(extra[n])} package(s) other nodes of its group lack: {_listed(extra[n])}")
    return {n: p for n, p in problems.items() if p}
