"""Node image faults: one compute node runs other software than its peers.

Nodes of a local cluster share the machine's kernel and root filesystem, so what a node
reports is changed in its own mount namespace only: a copy of dpkg's database with other
package versions (or packages gone) bound over ``/var/lib/dpkg/status``, a file bound over
``/proc/sys/kernel/osrelease``, ``/proc/cmdline``, ``/proc/cpuinfo``, a sysctl's file or a
transparent-hugepage setting, a ``/sys/module`` without a module. What reads them (``dpkg-query``,
``uname -r``'s file, the boot's command line, the CPUs' microcode, the tunables, the modules) sees
a node that was left out of an update, booted from a stale boot entry, missed by a firmware
campaign or by a configuration run, or whose module did not load. The kernel itself is unchanged:
only what the node reads.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
from pathlib import Path

from ..probes.nodeimage import TAINT_FLAGS, module_name
from . import mounted_on_node, require_local

DPKG_STATUS = "/var/lib/dpkg/status"


def edit_dpkg_status(text: str, versions: dict[str, str], removed: tuple[str, ...] = ()) -> str:
    """dpkg's status database with ``versions`` ({package: version}) set and the stanzas of
    ``removed`` dropped; a package named in neither is unchanged. Every named package must be
    there (else ValueError: the fault would change nothing)."""
    stanzas = text.strip("\n").split("\n\n")
    out, seen = [], set()
    for stanza in stanzas:
        m = re.match(r"Package: (\S+)", stanza)
        name = m.group(1) if m else None
        if name in removed:
            seen.add(name)
            continue
        if name in versions:
            seen.add(name)
            stanza = re.sub(r"^Version: .*$", f"Version: {versions[name]}", stanza, count=1, flags=re.M)
        out.append(stanza)
    missing = (set(versions) | set(removed)) - seen
    if missing:
        raise ValueError(f"not installed here, the fault would change nothing: {', '.join(sorted(missing))}")
    return "\n\n".join(out) + "\n"


@contextlib.contextmanager
def _file_reads(engine, name: str, path: str, text: str, tag: str):
    """On ``name``, the file ``path`` reads ``text`` (a copy, ``fault-<tag>`` in the node's
    directory, bound over it in the node's mount namespace)."""
    require_local(engine)
    copy = engine.node_paths(name).root / f"fault-{tag}"
    copy.write_text(text)
    try:
        with mounted_on_node(engine.cluster.node(name), path, "--bind", str(copy)):
            yield
    finally:
        copy.unlink(missing_ok=True)


def _file_says(engine, name: str, path: str, line: str, tag: str):
    """On ``name``, the one-line file ``path`` (under /proc or /sys) says ``line``."""
    return _file_reads(engine, name, path, line + "\n", tag)


def _file_edited(engine, name: str, path: str, edit, tag: str):
    """On ``name``, ``path`` reads ``edit(this machine's text of it, without its last newline)``."""
    return _file_says(engine, name, path, edit(Path(path).read_text().rstrip("\n")), tag)


def packages_differ(engine, name: str, versions: dict[str, str], removed: tuple[str, ...] = ()):
    """On ``name``, dpkg says the packages of ``versions`` are at those versions and those of
    ``removed`` are not installed."""
    return _file_reads(engine, name, DPKG_STATUS, edit_dpkg_status(Path(DPKG_STATUS).read_text(), versions, removed),
                       "dpkg-status")


def kernel_release(engine, name: str, release: str):
    """On ``name``, ``/proc/sys/kernel/osrelease`` (what ``uname -r`` prints) says ``release``."""
    return _file_says(engine, name, "/proc/sys/kernel/osrelease", release, "osrelease")


def booted_with(engine, name: str, edit):
    """On ``name``, ``/proc/cmdline`` says ``edit(the machine's command line)``: the node
    booted from another boot entry."""
    return _file_edited(engine, name, "/proc/cmdline", edit, "cmdline")


def edit_cpuinfo(text: str, revision: str, cpus: tuple[int, ...] | None = None) -> str:
    """``/proc/cpuinfo`` with the ``microcode`` line of ``cpus`` (processor numbers; all when
    None) saying ``revision``; ValueError where there is no such line to change."""
    out, cpu, changed = [], None, 0
    for line in text.splitlines():
        m = re.match(r"processor\s*:\s*(\d+)", line)
        if m:
            cpu = int(m.group(1))
        if re.match(r"microcode\s*:", line) and (cpus is None or cpu in cpus):
            line, changed = re.sub(r":.*", f": {revision}", line, count=1), changed + 1
        out.append(line)
    if not changed:
        raise ValueError("no microcode line to change in /proc/cpuinfo (not an x86 machine?): the fault would change "
                         "nothing")
    return "\n".join(out)


def microcode(engine, name: str, revision: str, cpus: tuple[int, ...] | None = None):
    """On ``name``, ``/proc/cpuinfo`` says its CPUs ``cpus`` (all when None) run microcode
    ``revision``: missed by a firmware campaign, or (some CPUs only) a partial late load."""
    return _file_edited(engine, name, "/proc/cpuinfo", lambda t: edit_cpuinfo(t, revision, cpus), "cpuinfo")


def sysctl(engine, name: str, key: str, value: str):
    """On ``name``, the sysctl ``key`` (``vm.swappiness``) reads ``value``."""
    return _file_says(engine, name, "/proc/sys/" + key.replace(".", "/"), value, f"sysctl-{key}")


def transparent_hugepages(engine, name: str, setting: str, chosen: str):
    """On ``name``, ``/sys/kernel/mm/transparent_hugepage/<setting>`` has ``chosen`` selected."""
    path = f"/sys/kernel/mm/transparent_hugepage/{setting}"
    return _file_edited(engine, name, path, lambda text: " ".join(
        f"[{w}]" if w.strip("[]") == chosen else w.strip("[]") for w in text.split()), f"thp-{setting}")


def cpus_online(engine, name: str, cpulist: str):
    """On ``name``, ``/sys/devices/system/cpu/online`` says ``cpulist`` (cores taken offline)."""
    return _file_says(engine, name, "/sys/devices/system/cpu/online", cpulist, "cpu-online")


def memory_total(engine, name: str, fraction: float, swap_kb: int | None = None):
    """On ``name``, ``/proc/meminfo`` says MemTotal is ``fraction`` of this machine's (a DIMM
    lost), and SwapTotal ``swap_kb`` where given (swap left on)."""
    def edit(text: str) -> str:
        text = re.sub(r"^(MemTotal:\s*)(\d+)", lambda m: f"{m.group(1)}{int(int(m.group(2)) * fraction)}", text,
                      count=1, flags=re.M)
        return text if swap_kb is None else re.sub(r"^(SwapTotal:\s*)\d+", rf"\g<1>{swap_kb}", text, count=1, flags=re.M)
    return _file_edited(engine, name, "/proc/meminfo", edit, "meminfo")


def tainted(engine, name: str, letters: str):
    """On ``name``, ``/proc/sys/kernel/tainted`` holds the flags ``letters`` (e.g. "MP": a
    machine check on a node with a proprietary driver)."""
    known = [flag for flag, _ in TAINT_FLAGS]
    mask = sum(1 << known.index(letter) for letter in letters)
    return _file_says(engine, name, "/proc/sys/kernel/tainted", str(mask), "tainted")


def _listed_module(line: str) -> str:
    """The module a line of ``/proc/modules`` (``name size ...``) or ``modules.builtin``
    (``kernel/.../name.ko``) is about."""
    return module_name(line.split(" ", 1)[0].rsplit("/", 1)[-1].split(".ko", 1)[0])


@contextlib.contextmanager
def module_unloaded(engine, name: str, module: str):
    """On ``name``, the kernel module ``module`` is neither loaded nor built in: ``/sys/module``
    is a tmpfs holding a directory for each of this machine's other modules, and
    ``/proc/modules`` and ``modules.builtin`` (where the machine has them) are copies without
    it. ValueError where this machine does not have the module (the fault would change nothing)."""
    require_local(engine)
    module = module_name(module)
    node = engine.cluster.node(name)
    with contextlib.ExitStack() as stack:
        changed = False
        sysfs = Path("/sys/module")
        if (sysfs / module).is_dir():
            others = sorted(p.name for p in sysfs.iterdir() if p.name != module)
            stack.enter_context(mounted_on_node(node, str(sysfs), "-t", "tmpfs", "hpcv-fault"))
            node.run(f"cd {sysfs} && mkdir -- " + " ".join(shlex.quote(o) for o in others), timeout=30).check()
            changed = True
        for path in (Path("/proc/modules"), Path("/lib/modules", os.uname().release, "modules.builtin")):
            lines = path.read_text().splitlines() if path.is_file() else []
            kept = [line for line in lines if _listed_module(line) != module]
            if len(kept) < len(lines):
                stack.enter_context(_file_reads(engine, name, str(path), "".join(k + "\n" for k in kept),
                                                f"modules-{path.name}"))
                changed = True
        if not changed:
            raise ValueError(f"this machine has no kernel module {module}: the fault would change nothing")
        yield
