"""Slurm-stack faults on a local cluster: a daemon stopped, a node drained, a different munge
key on one node, gres.conf promising a GPU that is not there, cgroup memory enforcement off,
the wrong default MPI plugin."""

from __future__ import annotations

import contextlib
import re
import shlex
from pathlib import Path

from . import edited, mounted_on_node, require_local
from ._wait import until
from ..probes import slurm as slurm_probe
from ..transport.base import CommandFailed


def _state(engine, name: str) -> str:
    nodes = slurm_probe.show_nodes(engine.cluster.controller)
    return nodes[name].state_text if name in nodes else "MISSING"


def _usable(engine, name: str) -> bool:
    try:
        nodes = slurm_probe.show_nodes(engine.cluster.controller)
    except CommandFailed:  # slurmctld restarting (Slurm 24.05 and later re-exec on reconfigure)
        return False
    return name in nodes and nodes[name].usable


def wait_controller(engine, timeout: float = 20.0) -> None:
    """slurmctld answers; otherwise the error carries the end of its log."""
    try:
        until(lambda: engine.cluster.controller.run("scontrol ping", timeout=10).ok, "slurmctld to answer", timeout)
    except TimeoutError as e:
        log = engine.node_paths(engine.spec.controller.name).log / "slurmctld.log"
        try:
            tail = " | ".join(log.read_text(errors="replace").splitlines()[-8:])
        except OSError as read_error:
            tail = str(read_error)
        raise TimeoutError(f"{e}; end of {log}: {tail}") from None


def wait_usable(engine, names: list[str], timeout: float = 40.0) -> None:
    until(lambda: all(_usable(engine, n) for n in names), f"nodes {names} usable in Slurm again", timeout)


@contextlib.contextmanager
def slurmd_stopped(engine, name: str, timeout: float = 40.0):
    """slurmd on the node is stopped, and slurmctld has noticed (node NOT_RESPONDING)."""
    require_local(engine)
    engine.stop_daemon(name, "slurmd")
    try:
        until(lambda: "NOT_RESPONDING" in _state(engine, name) or "DOWN" in _state(engine, name),
              f"slurmctld to mark {name} not responding", timeout)
        yield
    finally:
        engine.start_daemon(name, "slurmd")
        wait_usable(engine, [name], timeout)


@contextlib.contextmanager
def drained(engine, name: str, reason: str = "hpcv fault injection"):
    require_local(engine)
    ctl = engine.cluster.controller
    ctl.run(f"scontrol update nodename={name} state=drain reason={shlex.quote(reason)}", timeout=15).check()
    try:
        yield
    finally:
        ctl.run(f"scontrol update nodename={name} state=resume", timeout=15).check()
        wait_usable(engine, [name])


@contextlib.contextmanager
def munge_key_differs(engine, name: str):
    """The node's munged runs with a key of its own (same mode and owner, different bytes)."""
    require_local(engine)
    key = engine.node_paths(name).munge_key
    original = key.read_bytes()
    _replace_key(key, bytes(b ^ 0x5A for b in original))
    _restart(engine, name, "munged")
    try:
        yield
    finally:
        _replace_key(key, original)
        _restart(engine, name, "munged")


def _replace_key(path: Path, data: bytes) -> None:
    path.chmod(0o600)
    path.write_bytes(data)
    path.chmod(0o400)


def _restart(engine, name: str, what: str) -> None:
    engine.stop_daemon(name, what)
    engine.start_daemon(name, what)
    node = engine.cluster.node(name)
    until(lambda: node.run("munge -n > /dev/null", timeout=10).ok, f"munged on {name} to answer", 15)


@contextlib.contextmanager
def munge_key_mode(engine, name: str, mode: int):
    """The node's munge key file has ``mode`` (munged keeps running with the key it read)."""
    require_local(engine)
    key = engine.node_paths(name).munge_key
    before = key.stat().st_mode & 0o777
    key.chmod(mode)
    try:
        yield
    finally:
        key.chmod(before)


def _gres_files_edited(engine, name: str, replacement):
    """gres.conf with the ``File=...`` of the node's GPU line replaced by ``replacement(count)``
    (the node's configured GPU count)."""
    require_local(engine)
    count = next(n.gpus for n in engine.spec.compute if n.name == name)

    def edit(text: str) -> str:
        line = re.compile(rf"^(NodeName={re.escape(name)} Name=gpu .*?)File=\S+$", re.M)
        if not line.search(text):
            raise ValueError(f"gres.conf has no GPU line for {name}")
        return line.sub(lambda m: m.group(1) + replacement(count), text)

    return edited(engine.conf_dir / "gres.conf", edit)


def gres_conf_extra_gpu(engine, name: str):
    """gres.conf gives the node one GPU device file more than it has."""
    return _gres_files_edited(engine, name, lambda count: f"File=/dev/nvidia[0-{count}]")


def gres_conf_without_files(engine, name: str):
    """gres.conf counts the node's GPUs (``Count=``) but names no device file for them: what
    an ``AutoDetect=nvml`` line leaves to NVML, on a node where nothing detects them."""
    return _gres_files_edited(engine, name, lambda count: f"Count={count}")


def _reconfigure(engine, restart_slurmd: bool) -> None:
    ctl = engine.cluster.controller
    ctl.run("scontrol reconfigure", timeout=30).check()
    wait_controller(engine)
    if restart_slurmd:
        names = [n.name for n in engine.spec.compute]
        for n in names:
            engine.stop_daemon(n, "slurmd")
            engine.start_daemon(n, "slurmd")
        wait_usable(engine, names)


@contextlib.contextmanager
def _conf_edited(engine, path: Path, edit, restart_slurmd: bool):
    """``path`` rewritten by ``edit`` and Slurm reconfigured (slurmd restarted if asked) while
    inside; the original back and Slurm reconfigured again on the way out."""
    require_local(engine)
    try:
        with edited(path, edit):
            _reconfigure(engine, restart_slurmd)
            yield
    finally:
        _reconfigure(engine, restart_slurmd)


def _conf_setting(engine, path: Path, key: str, value: str, restart_slurmd: bool):
    return _conf_edited(engine, path, lambda text: re.sub(rf"^{re.escape(key)}=.*$", f"{key}={value}", text, flags=re.M),
                        restart_slurmd)


def slurm_conf_added(engine, line: str, restart_slurmd: bool = True):
    """slurm.conf with ``line`` (``Key=value``) added before the node lines."""
    def edit(text: str) -> str:
        head, sep, rest = text.partition("\nNodeName=")
        return f"{head}\n{line}{sep}{rest}"

    return _conf_edited(engine, engine.slurm_conf, edit, restart_slurmd)


@contextlib.contextmanager
def controller_script_lost_its_mode(engine, key: str = "PrologSlurmctld"):
    """slurm.conf names a controller script (``key``) that was executable when slurmctld read
    it and is no longer (mode 0644, as a configuration push without the x bit leaves it).
    Slurm 24.11 refuses to start (or reconfigure) with such a script; 22.05 fails each job."""
    require_local(engine)
    script = engine.conf_dir / f"hpcv-{key.lower()}.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    try:
        with slurm_conf_added(engine, f"{key}=/etc/slurm/{script.name}", restart_slurmd=False):
            script.chmod(0o644)
            try:
                yield f"/etc/slurm/{script.name}"
            finally:
                script.chmod(0o755)
    finally:
        script.unlink(missing_ok=True)


def cgroup_setting(engine, key: str, value: str):
    """cgroup.conf ``key=value`` on every node (slurmd restarted so steps pick it up)."""
    return _conf_setting(engine, engine.conf_dir / "cgroup.conf", key, value, restart_slurmd=True)


def slurm_conf_setting(engine, key: str, value: str, restart_slurmd: bool = False):
    """slurm.conf ``key=value`` (``scontrol reconfigure``; ``restart_slurmd`` for the settings
    slurmd reads only at start, such as ProctrackType)."""
    return _conf_setting(engine, engine.slurm_conf, key, value, restart_slurmd=restart_slurmd)


def _restart_slurm(engine, names: list[str]) -> None:
    ctl = engine.spec.controller.name
    engine.stop_daemon(ctl, "slurmctld")
    engine.start_daemon(ctl, "slurmctld")
    wait_controller(engine)
    for n in names:
        engine.stop_daemon(n, "slurmd")
        engine.start_daemon(n, "slurmd")
    wait_usable(engine, [n.name for n in engine.spec.compute])


@contextlib.contextmanager
def backup_controller_down(engine, name: str):
    """slurm.conf names ``name`` as a backup controller (a second SlurmctldHost line) where no
    slurmctld runs: the cluster works, but has no failover (slurmctld and slurmd restarted)."""
    require_local(engine)
    node = engine.node_spec_of(name)
    compute = [n.name for n in engine.spec.compute]

    def edit(text: str) -> str:
        head, sep, rest = text.partition("\nSlurmctldHost=")
        first, nl, tail = rest.partition("\n")
        return f"{head}{sep}{first}\nSlurmctldHost={name}({node.address}){nl}{tail}"

    try:
        with edited(engine.slurm_conf, edit):
            _restart_slurm(engine, compute)
            yield
    finally:
        _restart_slurm(engine, compute)


@contextlib.contextmanager
def _slurm_conf_line(engine, head: str, key: str, value: str, apply):
    """slurm.conf's line starting ``head`` (``NodeName=c1``) says ``key=value`` (replaced, or
    added at the line's end); ``apply()`` makes Slurm read it, after the edit and after the
    repair."""
    require_local(engine)

    def edit(text: str) -> str:
        pattern = re.compile(rf"^({re.escape(head)} .*\b{re.escape(key)}=)\S+", re.M)
        if pattern.search(text):
            return pattern.sub(rf"\g<1>{value}", text)
        line = re.compile(rf"^({re.escape(head)} .*)$", re.M)
        if not line.search(text):
            raise ValueError(f"slurm.conf has no {head} line")
        return line.sub(rf"\g<1> {key}={value}", text, count=1)

    try:
        with edited(engine.slurm_conf, edit):
            apply()
            yield
    finally:
        apply()


def node_definition(engine, name: str, key: str, value: str):
    """The node's NodeName line says ``key=value`` (e.g. RealMemory=512): Slurm then registers
    the node with other resources than the validation config promises (slurmctld restarted)."""
    return _slurm_conf_line(engine, f"NodeName={name}", key, value, lambda: _restart_slurm(engine, [name]))


def partition_setting(engine, partition: str, key: str, value: str):
    """The partition's line says ``key=value`` (e.g. Default=NO); ``scontrol reconfigure``."""
    return _slurm_conf_line(engine, f"PartitionName={partition}", key, value,
                            lambda: _reconfigure(engine, restart_slurmd=False))


@contextlib.contextmanager
def stale_slurm_conf(engine, name: str, extra_line: str = "# edited on this node only"):
    """``name`` reads a slurm.conf of its own (the cluster's plus ``extra_line``), bound over
    the shared one in its mount namespace only: a node whose copy was not updated."""
    require_local(engine)
    node = engine.cluster.node(name)
    copy = engine.node_paths(name).root / "fault-slurm.conf"
    copy.write_text(engine.slurm_conf.read_text() + extra_line + "\n")
    try:
        with mounted_on_node(node, f"{slurm_probe.config_dir(node)}/slurm.conf", "--bind", str(copy)):
            yield
    finally:
        copy.unlink(missing_ok=True)


@contextlib.contextmanager
def slurmd_upgraded_not_restarted(engine, name: str, version: str = "22.05.99"):
    """On ``name`` the installed slurmd says it is ``version`` (``slurmd -V``; a script bound
    over the binary in the node's mount namespace only) while the running one stays as it was:
    a package upgrade without a restart of the daemon. Nothing restarts slurmd meanwhile."""
    require_local(engine)
    node = engine.cluster.node(name)
    binary = node.run("command -v slurmd || echo /usr/sbin/slurmd", timeout=15).check().stdout.strip()
    fake = engine.node_paths(name).root / "fault-slurmd"
    fake.write_text(f"#!/bin/sh\necho 'slurm-wlm {version}'\n")
    fake.chmod(0o755)
    try:
        with mounted_on_node(node, binary, "--bind", str(fake)):
            yield
    finally:
        fake.unlink(missing_ok=True)


@contextlib.contextmanager
def slurm_dir_full(engine, name: str, path: str):
    """``path`` (a Slurm state directory) on ``name`` is a 1 MiB tmpfs of its own, its files
    copied in: a nearly full filesystem (in the node's mount namespace only)."""
    require_local(engine)
    node = engine.cluster.node(name)
    q = shlex.quote(path)
    keep = node.run("mktemp -d", timeout=15).check().stdout.strip()
    node.run(f"cp -a {q}/. {shlex.quote(keep)}/", timeout=30).check()
    try:
        with mounted_on_node(node, path, "-t", "tmpfs", "-o", "size=1m", "hpcv-fault-full"):
            node.run(f"cp -a {shlex.quote(keep)}/. {q}/ 2>/dev/null", timeout=30)  # what fits
            yield
    finally:
        node.run(f"rm -rf {shlex.quote(keep)}", timeout=30)


#: site wrappers that lose the exit status of what they wrap (the ``REAL`` is the real program)
SRUN_WRAPPER_DROPS_STATUS = """#!/bin/sh
# a site's srun wrapper (loads the site's modules, then runs srun) that loses srun's exit status
REAL "$@"
echo "srun finished" >&2
"""
SBATCH_WRAPPER_APPENDS = """#!/bin/sh
# a site's sbatch wrapper that appends job statistics to every script read from standard input
{ cat; echo 'echo "job $SLURM_JOB_ID ended on $(hostname)"'; } | REAL "$@"
"""


@contextlib.contextmanager
def wrapped_on_controller(engine, program: str, wrapper: str):
    """The controller's ``program`` (srun, sbatch: what users run there) is replaced, in its mount
    namespace only, by the ``wrapper`` script, which calls a copy of the real program."""
    import shutil

    require_local(engine)
    real = shutil.which(program, path="/usr/bin:/bin")
    if real is None:
        raise RuntimeError(f"no {program} in /usr/bin to wrap")
    folder = engine.work_dir / "faults"
    folder.mkdir(parents=True, exist_ok=True)
    copy, script = folder / f"{program}.real", folder / f"{program}.wrapper"
    shutil.copy2(real, copy)
    script.write_text(wrapper.replace("REAL", shlex.quote(str(copy))))
    script.chmod(0o755)
    try:
        with mounted_on_node(engine.cluster.controller, real, "--bind", str(script)):
            yield
    finally:
        copy.unlink(missing_ok=True)
        script.unlink(missing_ok=True)


@contextlib.contextmanager
def user_with_other_uid(engine, name: str, user: str, uid: int):
    """On node ``name`` only, ``user``'s passwd entry says uid ``uid`` (a copied passwd bound
    over the node's): a node whose directory is out of date."""
    require_local(engine)
    original = (engine.work_dir / "etc" / "passwd").read_text()
    lines = [":".join([p[0], p[1], str(uid), *p[3:]]) if (p := line.split(":"))[0] == user and len(p) >= 7 else line
             for line in original.splitlines()]
    if lines == original.splitlines():
        raise ValueError(f"the nodes' passwd has no user {user}")
    copy = engine.work_dir / f"passwd-fault-{name}"
    copy.write_text("\n".join(lines) + "\n")
    try:
        with mounted_on_node(engine.cluster.node(name), "/etc/passwd", "--bind", str(copy)):
            yield
    finally:
        copy.unlink(missing_ok=True)
