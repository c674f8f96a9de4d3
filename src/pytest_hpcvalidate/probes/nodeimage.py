"""What a node runs and runs on: the facts that make compute nodes one image, and where a node
differs from the nodes meant to be like it.

Compute nodes are meant to be one image. A node reinstalled from an older image, or left out
of an update, runs another kernel, Open MPI, PMIx or munge than its peers: jobs fail only
when they land on it, or only across it and another node. One command per node
(:data:`COMMAND`, :func:`tunables_command`) reads, and a function per kind says which nodes differ:

- kernel release (``/proc/sys/kernel/osrelease``), ``/etc/os-release`` and the package list
  (``dpkg-query``, or ``rpm``): :func:`differences`;
- the kernel command line (``/proc/cmdline``): a node booted from a stale PXE or GRUB entry runs
  another cgroup hierarchy, IOMMU mode, hugepage pool or CPU isolation: :func:`parameter_differences`;
- CPU model, the CPUs' microcode (``/proc/cpuinfo``) and the BIOS (``/sys/class/dmi/id``): a node
  missed by a firmware campaign, or a late microcode load that reached only some CPUs:
  :func:`firmware_differences`;
- the kernel tunables a site sets (sysctls such as ``vm.zone_reclaim_mode``, transparent
  hugepages): a node a configuration-management run missed: :func:`tunable_differences`;
- online CPUs, SMT, NUMA nodes and memory: a failed DIMM or socket that a conservative
  slurm.conf still accepts: :func:`hardware_differences`;
- the kernel's taint flags: a machine check, a bad page, an oops or a soft lockup since boot:
  :func:`taints` (a per-node rule, not a comparison);
- the kernel modules it has (loaded, ``/proc/modules`` and ``/sys/module``, or built in,
  ``modules.builtin``), against the ones the config requires: :func:`missing_modules` (a per-node
  rule: modules autoload with a node's history, so nodes meant to be alike differ in them).
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import statistics
from collections import Counter
from dataclasses import dataclass, field

from ClusterShell.RangeSet import RangeSet, RangeSetParseError

from ..hostlist import fold

#: prints ``KERNEL``, ``CMDLINE``, ``CPU`` and ``MICROCODE`` (each distinct value of its CPUs,
#: ``|``-separated), ``CPUS``/``NUMA`` (online CPU and NUMA node lists), ``SMT`` (1/0),
#: ``MEMKB``/``SWAPKB`` (MemTotal, SwapTotal), ``TAINTED`` (the kernel's taint mask), ``MODULES`` (the kernel modules loaded or
#: built in, ``-`` as ``_``, space-separated), ``BIOS`` (vendor, version, date; empty without DMI), ``OS``, ``TOOL`` and
#: one ``PKG<TAB>name<TAB>version`` per installed package
COMMAND = r"""
echo "KERNEL $(cat /proc/sys/kernel/osrelease)"
echo "CMDLINE $(cat /proc/cmdline)"
echo "CPU $(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | sort -u | paste -sd '|')"
echo "MICROCODE $(sed -n 's/^microcode[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | sort -u | paste -sd '|')"
echo "TAINTED $(cat /proc/sys/kernel/tainted)"
echo "MODULES $( { cut -d' ' -f1 /proc/modules; ls /sys/module; sed 's#.*/##; s#\.ko.*##' "/lib/modules/$(uname -r)/modules.builtin"; } 2>/dev/null | tr - _ | sort -u | paste -sd ' ')"
echo "CPUS $(cat /sys/devices/system/cpu/online)"
echo "SMT $(cat /sys/devices/system/cpu/smt/active 2>/dev/null)"
echo "NUMA $(cat /sys/devices/system/node/online 2>/dev/null)"
echo "MEMKB $(sed -n 's/^MemTotal:[[:space:]]*\([0-9]*\).*/\1/p' /proc/meminfo)"
echo "SWAPKB $(sed -n 's/^SwapTotal:[[:space:]]*\([0-9]*\).*/\1/p' /proc/meminfo)"
echo "BIOS $(cat /sys/class/dmi/id/bios_vendor /sys/class/dmi/id/bios_version /sys/class/dmi/id/bios_date 2>/dev/null | paste -sd ' ')"
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
    cmdline: str = ""  # /proc/cmdline
    cpu: str = ""  # model name(s) of its CPUs, "|"-separated
    microcode: str = ""  # microcode revision(s) of its CPUs, "|"-separated
    bios: str = ""  # vendor version date, "" without DMI
    cpus: str = ""  # online CPUs, a list such as 0-63
    smt: str = ""  # 1 when SMT is active, 0 when not, "" when not exposed
    numa: str = ""  # online NUMA nodes, a list such as 0-1
    memkb: str = ""  # MemTotal in kB
    swapkb: str = ""  # SwapTotal in kB
    tainted: str = ""  # /proc/sys/kernel/tainted, a bit mask
    modules: str = ""  # kernel modules loaded or built in, space-separated, "-" as "_"
    tunables: dict[str, str] = field(default_factory=dict)  # sysctl (or transparent_hugepage.*) -> value


#: sysctls compared by default (``node_image.sysctls``): memory placement and reclaim, hugepages,
#: what lets one rank attach to another's memory (CMA), limits that large jobs meet, socket buffers,
#: the ARP table a large cluster fills (not fs.file-max: the kernel sizes it from the memory, which
#: differs by a few pages between identical nodes)
DEFAULT_SYSCTLS = (
    "kernel.numa_balancing", "vm.zone_reclaim_mode", "vm.swappiness", "vm.overcommit_memory", "vm.max_map_count",
    "vm.nr_hugepages", "kernel.yama.ptrace_scope", "kernel.pid_max", "kernel.perf_event_paranoid",
    "net.core.rmem_max", "net.core.wmem_max", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem",
    "net.ipv4.neigh.default.gc_thresh3",
)

#: the transparent-hugepage settings, compared always (the chosen one of ``always [madvise] never``)
THP = ("enabled", "defrag")


def tunables_command(sysctls) -> str:
    """Prints ``TUNE<TAB>name<TAB>value`` for each of ``sysctls`` the node has (whitespace in a
    value as single spaces) and for ``transparent_hugepage.enabled`` / ``.defrag``."""
    names = " ".join(shlex.quote(n) for n in sysctls)
    thp = " ".join(THP)
    return (f"for k in {names}; do f=/proc/sys/$(echo \"$k\" | tr . /); [ -r \"$f\" ] && "
            f"printf 'TUNE\\t%s\\t%s\\n' \"$k\" \"$(tr -s ' \\t\\n' '   ' < \"$f\" | sed 's/ *$//')\"; done\n"
            f"for k in {thp}; do f=/sys/kernel/mm/transparent_hugepage/$k; [ -r \"$f\" ] && "
            f"printf 'TUNE\\ttransparent_hugepage.%s\\t%s\\n' \"$k\" \"$(sed -n 's/.*\\[\\(.*\\)\\].*/\\1/p' \"$f\")\"; "
            f"done\ntrue\n")


def parse(node: str, text: str) -> NodeImage:
    """The output of :data:`COMMAND` on ``node``."""
    values = {k: "" for k in ("kernel", "os", "tool", "cmdline", "cpu", "microcode", "bios", "cpus", "smt", "numa",
                              "memkb", "swapkb", "tainted", "modules")}
    packages: dict[str, str] = {}
    tunables: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith(("PKG\t", "TUNE\t")):
            kind, name, value = (line.split("\t") + ["", ""])[:3]
            if name:
                (packages if kind == "PKG" else tunables)[name] = value
            continue
        key, _, value = line.partition(" ")
        if key.lower() in values:
            values[key.lower()] = value.strip()
    return NodeImage(node, packages=packages, tunables=tunables, **values)


def read(node, sysctls=DEFAULT_SYSCTLS) -> NodeImage:
    """The node's image facts (see :data:`COMMAND`, :func:`tunables_command`); a failed read
    raises with the node's answer."""
    r = node.run(COMMAND + tunables_command(sysctls), timeout=60)
    image = parse(node.name, r.stdout)
    if not r.ok or not image.kernel:
        raise RuntimeError(f"{node.name}: could not read its kernel and packages: {r.describe()}")
    return image


def cut_list(items: list[str]) -> str:
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

    versions = _value_differences(listed)
    missing, extra = _presence_differences(listed, groups)
    for n in listed:
        if versions[n]:
            problems[n].append(f"{len(versions[n])} package version(s) differ: {cut_list(versions[n])}")
        if missing[n]:
            problems[n].append(f"lacks {len(missing[n])} package(s) other nodes of its group have: {cut_list(missing[n])}")
        if extra[n]:
            problems[n].append(f"has {len(extra[n])} package(s) other nodes of its group lack: {cut_list(extra[n])}")
    return {n: p for n, p in problems.items() if p}


#: packages a login node must have at the compute nodes' version (``node_image.login_packages``):
#: what users build against there (MPI, PMIx, UCX, CUDA, NCCL) runs on the compute nodes, and
#: what they submit with (Slurm's clients, munge) speaks the compute nodes' protocol
LOGIN_PACKAGES = ("slurm*", "libslurm*", "munge", "libmunge*", "*openmpi*", "*pmix*", "*ucx*", "cuda-*",
                  "libnccl*", "apptainer*")


def login_differences(login: NodeImage, compute: dict[str, NodeImage], patterns,
                      ignore: tuple[str, ...] = ()) -> tuple[list[str], int]:
    """([how ``login``'s packages differ], how many were compared): each package of ``login``
    matching ``patterns`` (fnmatch) and not ``ignore`` that compute nodes with the same package
    tool have too, at a version none of them has or, where most of them agree, another than
    theirs. A package only on the login node (compilers) or only on the compute nodes (slurmd)
    is not compared."""
    peers = {n: i.packages for n, i in compute.items() if i.tool == login.tool and login.tool not in ("", "none")}
    found, compared = [], 0
    for name in sorted(login.packages):
        if not any(fnmatch.fnmatch(name, g) for g in patterns) or any(fnmatch.fnmatch(name, g) for g in ignore):
            continue
        theirs = {n: p[name] for n, p in peers.items() if name in p}
        if not theirs:
            continue
        compared += 1
        counts = Counter(theirs.values()).most_common()
        majority = counts[0][0] if len(counts) == 1 or counts[0][1] > counts[1][1] else None
        mine = login.packages[name]
        differs = mine != majority if majority is not None else mine not in theirs.values()
        if differs:
            by_version: dict[str, list[str]] = {}
            for n, v in theirs.items():
                by_version.setdefault(v, []).append(n)
            found.append(f"{name} {mine} (" + "; ".join(f"{v} on {fold(ns)}" for v, ns in by_version.items()) + ")")
    return found, compared


def _value_differences(have: dict[str, dict[str, str]], show=lambda key, value: f"{key} {value}") -> dict[str, list[str]]:
    """{node: ["<key value> (others' values on their nodes)", ...]} comparing each key's value
    over the nodes of ``have`` ({node: {key: value}}) that have the key; ``show`` writes a key
    and its value."""
    out: dict[str, list[str]] = {n: [] for n in have}
    for key in sorted({k for keys in have.values() for k in keys}):
        values = {n: keys[key] for n, keys in have.items() if key in keys}
        for node, others in _odd_ones(values).items():
            out[node].append(f"{show(key, values[node])} ({others})")
    return out


def _members(nodes, groups: dict[str, str]) -> list[list[str]]:
    """The nodes by their group (``groups``: node → group), groups of one left out."""
    members: dict[str, list[str]] = {}
    for n in nodes:
        members.setdefault(groups.get(n, ""), []).append(n)
    return [m for m in members.values() if len(m) > 1]


def _presence_differences(have: dict[str, dict[str, str]], groups: dict[str, str],
                          show=lambda node, key: key) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """({node: ["<key> (on the nodes that have it)", ...]}, {node: ["<key> (not on the nodes
    that lack it)", ...]}): which keys of ``have`` ({node: {key: value}}) a node lacks or alone
    has, within its group; ``show(node, key)`` writes the key as a node that has it has it."""
    missing: dict[str, list[str]] = {n: [] for n in have}
    extra: dict[str, list[str]] = {n: [] for n in have}
    for nodes in _members(have, groups):
        for key in sorted({k for n in nodes for k in have[n]}):
            for node in _odd_ones({n: "present" if key in have[n] else "" for n in nodes}):
                has = key in have[node]
                them = [n for n in nodes if (key in have[n]) != has]
                written = show(node if has else them[0], key)
                (extra if has else missing)[node].append(f"{written} ({'not on' if has else 'on'} {fold(them)})")
    return missing, extra


#: kernel parameters that name the node itself or its boot files, not how it runs: never compared
PER_NODE_PARAMETERS = ("BOOT_IMAGE", "initrd", "root", "ip", "hostname", "nfsroot")

_TOKEN = re.compile(r'(?:[^\s"]+|"[^"]*")+')


def kernel_parameters(cmdline: str, ignore: tuple[str, ...] = ()) -> dict[str, str]:
    """``/proc/cmdline`` → {parameter: value} for the kernel's parameters (those before ``--``
    go to the kernel, those after it to init); a flag's value is ""; a parameter given twice
    (``console=tty0 console=ttyS0``) has its values joined by commas. :data:`PER_NODE_PARAMETERS`
    and names matching a pattern of ``ignore`` (fnmatch) are left out."""
    out: dict[str, list[str]] = {}
    for token in _TOKEN.findall(cmdline):
        if token == "--":
            break
        key, eq, value = token.partition("=")
        if key in PER_NODE_PARAMETERS or any(fnmatch.fnmatch(key, g) for g in ignore):
            continue
        out.setdefault(key, []).append(value if eq else "")
    return {k: ",".join(v) for k, v in out.items()}


def _parameter(key: str, value: str) -> str:
    return f"{key}={value}" if value else key


def parameter_differences(images: dict[str, NodeImage], groups: dict[str, str],
                          ignore: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """{node: [how its kernel command line differs]} for the nodes whose kernel parameters are
    not those of the other nodes of their group (``groups``: node → group): a parameter's
    value, a parameter only some nodes boot with. Within groups, because a GPU group may boot
    with IOMMU or hugepage settings a CPU group does not. Nodes whose command line was not read
    are left out; ``ignore``: fnmatch patterns of parameter names allowed to differ."""
    params = {n: kernel_parameters(i.cmdline, ignore) for n, i in images.items() if i.cmdline}
    return _settings_differences(params, groups, "boots with")


def _settings_differences(have: dict[str, dict[str, str]], groups: dict[str, str], verb: str) -> dict[str, list[str]]:
    """{node: [how its settings differ]}: ``have`` ({node: {name: value}}) compared within each
    group: a value other than its peers', a setting it lacks, one it alone has (``verb`` it)."""
    problems: dict[str, list[str]] = {n: [] for n in have}
    for nodes in _members(have, groups):
        for node, lines in _value_differences({n: have[n] for n in nodes}, _parameter).items():
            problems[node] += lines
    missing, extra = _presence_differences(have, groups, lambda node, key: _parameter(key, have[node][key]))
    for node in have:
        if missing[node]:
            problems[node].append("lacks " + ", ".join(missing[node]))
        if extra[node]:
            problems[node].append(f"{verb} " + ", ".join(extra[node]) + " as well")
    return {n: p for n, p in problems.items() if p}


def firmware_differences(images: dict[str, NodeImage], groups: dict[str, str]) -> dict[str, list[str]]:
    """{node: [how its CPU, microcode or BIOS differs]}: a node whose CPUs run more than one
    microcode revision; within each group (``groups``: node → group), the CPU model, then the
    microcode among the nodes of one CPU model, and the BIOS (vendor, version, date). A value a
    node does not expose (no ``microcode`` line on ARM, no DMI in a VM) is not compared."""
    problems: dict[str, list[str]] = {n: [] for n in images}
    for node, i in images.items():
        if "|" in i.microcode:
            problems[node].append(f"its CPUs run different microcode ({i.microcode.replace('|', ', ')}): a late "
                                  f"microcode load reached only some of them")
    for nodes in _members(images, groups):
        facts = {n: {k: v for k, v in (("CPU", images[n].cpu), ("BIOS", images[n].bios)) if v} for n in nodes}
        for node, lines in _value_differences(facts).items():
            problems[node] += lines
        for same in _members(nodes, {n: images[n].cpu for n in nodes}):
            codes = {n: {"microcode": images[n].microcode} for n in same  # a mixed node is told above
                     if images[n].microcode and "|" not in images[n].microcode}
            for node, lines in _value_differences(codes).items():
                problems[node] += lines
    return {n: p for n, p in problems.items() if p}


def tunable_differences(images: dict[str, NodeImage], groups: dict[str, str]) -> dict[str, list[str]]:
    """{node: [how its kernel tunables differ]}: each node's sysctls and transparent-hugepage
    settings compared within its group (``groups``: node → group): a value other than its
    peers', a sysctl it lacks (a module not loaded, another kernel) or alone has."""
    return _settings_differences({n: i.tunables for n, i in images.items() if i.tunables}, groups, "has")


def count_list(cpulist: str) -> int | None:
    """How many entries a kernel list (``0-63,128-191``) names; None when empty or not one."""
    try:
        return len(RangeSet(cpulist.strip())) if cpulist.strip() else None
    except RangeSetParseError:
        return None


def _gib(kb: float) -> str:
    return f"{kb / 2**20:.1f} GiB"


def hardware_differences(images: dict[str, NodeImage], groups: dict[str, str],
                         memory_tolerance_pct: float = 2.0) -> dict[str, list[str]]:
    """{node: [how its CPUs, SMT, NUMA nodes, swap or memory differ]} within each group (``groups``:
    node → group): the count of online CPUs and of NUMA nodes, whether SMT is active and whether
    swap is on (a node left with swap thrashes where its peers are killed at their limit), exactly;
    MemTotal within ``memory_tolerance_pct`` of the group's median (identical nodes differ by
    what their firmware reserves). What a node does not expose is not compared."""
    problems: dict[str, list[str]] = {n: [] for n in images}
    for nodes in _members(images, groups):
        facts = {}
        for n in nodes:
            i = images[n]
            facts[n] = {k: str(v) for k, v in (("online CPUs", count_list(i.cpus)), ("NUMA nodes", count_list(i.numa)),
                                               ("SMT active", i.smt or None),
                                               ("swap", ("on" if int(i.swapkb) else "off") if i.swapkb.isdigit() else None))
                       if v is not None}
        for node, lines in _value_differences(facts).items():
            problems[node] += lines
        memory = {n: int(images[n].memkb) for n in nodes if images[n].memkb.isdigit()}
        if len(memory) < 2:
            continue
        median = statistics.median(memory.values())
        for node, kb in memory.items():
            off = (kb - median) / median * 100 if median else 0.0
            if abs(off) > memory_tolerance_pct:
                others = fold(n for n in memory if n != node)
                problems[node].append(f"memory {_gib(kb)}, {abs(off):.1f} % {'less' if off < 0 else 'more'} than "
                                      f"its group's median {_gib(median)} ({others}; tolerance {memory_tolerance_pct:g} %)")
    return {n: p for n, p in problems.items() if p}


#: the kernel's taint flags by bit (Documentation/admin-guide/tainted-kernels.rst): letter, meaning
TAINT_FLAGS = (
    ("P", "a proprietary module was loaded"), ("F", "a module was force-loaded"),
    ("S", "the kernel runs on an out-of-specification system"), ("R", "a module was force-unloaded"),
    ("M", "the processor reported a machine check exception"), ("B", "a bad page was referenced"),
    ("U", "a user-space program asked for a taint"), ("D", "the kernel died recently (an oops or BUG)"),
    ("A", "an ACPI table was overridden"), ("W", "the kernel issued a warning"),
    ("C", "a staging driver was loaded"), ("I", "a workaround for a platform firmware bug was applied"),
    ("O", "an out-of-tree module was loaded"), ("E", "an unsigned module was loaded"),
    ("L", "a soft lockup occurred"), ("K", "the kernel was live-patched"), ("X", "an auxiliary (distribution) taint"),
    ("T", "the kernel was built with the struct randomization plugin"), ("N", "an in-kernel test was run"),
)


def taints(mask: str) -> list[tuple[str, str]]:
    """The taint flags set in ``mask`` (``/proc/sys/kernel/tainted``) as (letter, meaning);
    a bit this table does not know is ``("?", "bit N")``. ValueError when ``mask`` is not a number."""
    value = int(mask.strip())
    out = []
    for bit in range(value.bit_length()):
        if value >> bit & 1:
            out.append(TAINT_FLAGS[bit] if bit < len(TAINT_FLAGS) else ("?", f"bit {bit}"))
    return out


def module_name(name: str) -> str:
    """A module's name as the kernel lists it: ``nvidia-peermem`` and ``nvidia_peermem`` are one."""
    return name.replace("-", "_")


def missing_modules(image: NodeImage, required) -> list[str]:
    """The modules of ``required`` (in its order, once each) that ``image``'s node has neither
    loaded nor built in."""
    have = set(image.modules.split())
    return [m for m in dict.fromkeys(module_name(r) for r in required) if m not in have]
