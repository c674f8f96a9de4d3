"""Slurm-stack faults on a local cluster: a daemon stopped, a node drained, a different munge
key on one node, gres.conf promising a GPU that is not there, cgroup memory enforcement off,
the wrong default MPI plugin, a plugin missing, a site TaskProlog that sets variables."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import tempfile
from pathlib import Path

from . import edited, mounted_on_node, require_local, wrapped_on_node
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
def _mode(path: Path, mode: int):
    """``path`` has ``mode`` while inside; its own mode back on the way out."""
    before = path.stat().st_mode & 0o7777
    path.chmod(mode)
    try:
        yield
    finally:
        path.chmod(before)


def munge_key_mode(engine, name: str, mode: int):
    """The node's munge key file has ``mode`` (munged keeps running with the key it read)."""
    require_local(engine)
    return _mode(engine.node_paths(name).munge_key, mode)


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
    """``key=value`` in ``path``: the key's line replaced, or added at the end where it has none."""
    def edit(text: str) -> str:
        line = re.compile(rf"^{re.escape(key)}=.*$", re.M)
        return line.sub(f"{key}={value}", text) if line.search(text) else text.rstrip("\n") + f"\n{key}={value}\n"

    return _conf_edited(engine, path, edit, restart_slurmd)


def slurm_conf_added(engine, line: str, restart_slurmd: bool = True):
    """slurm.conf with ``line`` (``Key=value``) added before the node lines."""
    def edit(text: str) -> str:
        head, sep, rest = text.partition("\nNodeName=")
        return f"{head}\n{line}{sep}{rest}"

    return _conf_edited(engine, engine.slurm_conf, edit, restart_slurmd)


@contextlib.contextmanager
def _site_script(engine, key: str, body: str = "exit 0\n", uid: int = 0):
    """slurm.conf names ``/etc/slurm/hpcv-<key>.sh`` as its ``key`` script (``Epilog``,
    ``TaskProlog``...): a shell script of ``body``, mode 0755, owned by ``uid``, in place when
    Slurm is reconfigured. Yields (the script on this machine, the path Slurm names); removed
    on the way out."""
    require_local(engine)
    script = engine.conf_dir / f"hpcv-{key.lower()}.sh"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    os.chown(script, uid, uid)
    try:
        with slurm_conf_added(engine, f"{key}=/etc/slurm/{script.name}", restart_slurmd=False):
            yield script, f"/etc/slurm/{script.name}"
    finally:
        script.unlink(missing_ok=True)


@contextlib.contextmanager
def controller_script_lost_its_mode(engine, key: str = "PrologSlurmctld"):
    """slurm.conf names a controller script (``key``) that was executable when slurmctld read
    it and is no longer (mode 0644, as a configuration push without the x bit leaves it).
    Slurm 24.11 refuses to start (or reconfigure) with such a script; 22.05 fails each job."""
    with _site_script(engine, key) as (script, named), _mode(script, 0o644):
        yield named


def conf_file_mode(engine, name: str, mode: int):
    """The cluster's ``/etc/slurm/<name>`` (every node reads the one copy) has ``mode``."""
    require_local(engine)
    return _mode(engine.conf_dir / name, mode)


@contextlib.contextmanager
def node_script_owned_by(engine, key: str, uid: int):
    """slurm.conf names a ``key`` script (``Epilog``) owned by ``uid``, not root: a user's copy
    put in place (``scontrol reconfigure``)."""
    with _site_script(engine, key, uid=uid) as (_, named):
        yield named


@contextlib.contextmanager
def task_prolog_exports(engine, variables: dict[str, str]):
    """slurm.conf names a TaskProlog that exports ``variables`` into every task (a site script
    that sets CUDA_VISIBLE_DEVICES for every job, GPUs or not)."""
    with _site_script(engine, "TaskProlog", "".join(f"echo 'export {k}={v}'\n" for k, v in variables.items())):
        yield


@contextlib.contextmanager
def slow_epilog(engine, seconds: float):
    """slurm.conf names an Epilog that takes ``seconds`` after every job (a node health check
    run per job, a slow cleanup): each node holds a finished job's CPUs that long."""
    with _site_script(engine, "Epilog", f"sleep {seconds}\nexit 0\n"):
        yield


@contextlib.contextmanager
def max_array_size(engine, size: int):
    """slurm.conf ``MaxArraySize=size``: job arrays of ``size`` tasks or more are refused.
    slurmctld is restarted on the way in and out: it keeps the limit it enforced first across
    ``scontrol reconfigure`` (22.05: an array of 6 was accepted with MaxArraySize=4 in the
    running config)."""
    try:
        with slurm_conf_setting(engine, "MaxArraySize", str(size)):
            _restart_slurm(engine, [])
            yield
    finally:
        _restart_slurm(engine, [])


def cgroup_setting(engine, key: str, value: str):
    """cgroup.conf ``key=value`` on every node (slurmd restarted so steps pick it up)."""
    return _conf_setting(engine, engine.conf_dir / "cgroup.conf", key, value, restart_slurmd=True)


@contextlib.contextmanager
def cores_unconstrained(engine):
    """Nothing pins a task to the CPUs it was granted: TaskPlugin=task/cgroup alone (no
    task/affinity) and cgroup.conf ConstrainCores=no; a one-CPU task runs on every CPU."""
    with slurm_conf_setting(engine, "TaskPlugin", "task/cgroup", restart_slurmd=True), \
            cgroup_setting(engine, "ConstrainCores", "no"):
        yield


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


def _line_says(head: str, key: str, value: str):
    """An edit of slurm.conf: its line starting ``head`` (``NodeName=c1``) says ``key=value``
    (replaced, or added at the line's end)."""
    def edit(text: str) -> str:
        pattern = re.compile(rf"^({re.escape(head)} .*\b{re.escape(key)}=)\S+", re.M)
        if pattern.search(text):
            return pattern.sub(rf"\g<1>{value}", text)
        line = re.compile(rf"^({re.escape(head)} .*)$", re.M)
        if not line.search(text):
            raise ValueError(f"slurm.conf has no {head} line")
        return line.sub(rf"\g<1> {key}={value}", text, count=1)

    return edit


@contextlib.contextmanager
def _slurm_conf_line(engine, head: str, settings: dict[str, str], apply):
    """slurm.conf's line starting ``head`` says each ``key=value`` of ``settings``
    (:func:`_line_says`); ``apply()`` makes Slurm read it, after the edit and after the repair."""
    require_local(engine)
    edits = [_line_says(head, key, value) for key, value in settings.items()]

    def edit(text: str) -> str:
        for one in edits:
            text = one(text)
        return text

    try:
        with edited(engine.slurm_conf, edit):
            apply()
            yield
    finally:
        apply()


@contextlib.contextmanager
def gpus_declared(engine, name: str, count: int):
    """The node has ``count`` simulated GPUs (device files made up to ``/dev/nvidia<count-1>``)
    and slurm.conf and gres.conf give it that many: Slurm schedules more GPUs there than the
    validation config says it has (a node that gained a GPU, a config copied from a bigger one)."""
    spec = next(n for n in engine.spec.compute if n.name == name)
    node = engine.cluster.node(name)
    extra = [f"/dev/nvidia{i}" for i in range(spec.gpus, count)]
    try:
        node.run(" && ".join(f"mknod -m 666 {path} c 195 {path[len('/dev/nvidia'):]}" for path in extra),
                 timeout=30).check()
        with _gres_files_edited(engine, name, lambda _: f"File=/dev/nvidia[0-{count - 1}]"), \
                edited(engine.slurm_conf, _line_says(f"NodeName={name}", "Gres", f"gpu:{spec.gpu_type}:{count}")):
            _restart_slurm(engine, [name])
            yield
    finally:
        node.run("rm -f " + " ".join(extra), timeout=30)
        _restart_slurm(engine, [name])


def node_definition(engine, name: str, key: str, value: str, **more: str):
    """The node's NodeName line says ``key=value`` (e.g. RealMemory=512) and each of ``more``
    (``ThreadsPerCore="2"``): Slurm then registers the node with other resources than the
    validation config promises, or lays out its CPUs otherwise (slurmctld restarted)."""
    return _slurm_conf_line(engine, f"NodeName={name}", {key: value, **more}, lambda: _restart_slurm(engine, [name]))


def partition_setting(engine, partition: str, key: str, value: str):
    """The partition's line says ``key=value`` (e.g. Default=NO); ``scontrol reconfigure``."""
    return _slurm_conf_line(engine, f"PartitionName={partition}", {key: value},
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
def directory_full(engine, name: str, path: str, size: str = "1m"):
    """``path`` on ``name`` is a tmpfs of ``size`` of its own, its files copied in (what
    fits): a nearly full filesystem, in the node's mount namespace only — a Slurm state
    directory, or the /tmp every job writes to."""
    require_local(engine)
    node = engine.cluster.node(name)
    q = shlex.quote(path)
    keep = tempfile.mkdtemp(prefix="fault-full-", dir=engine.node_paths(name).root)  # outside ``path``
    node.run(f"cp -a {q}/. {shlex.quote(keep)}/", timeout=30).check()
    try:
        with mounted_on_node(node, path, "-t", "tmpfs", "-o", f"size={size}", "hpcv-fault-full"):
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


def wrapped_on_controller(engine, program: str, wrapper: str):
    """The controller's ``program`` (srun, sbatch: what users run there) is replaced by the
    ``wrapper`` script (:func:`~pytest_hpcvalidate.faults.wrapped_on_node`)."""
    return wrapped_on_node(engine, engine.cluster.controller.name, program, wrapper)


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


@contextlib.contextmanager
def plugins_missing(engine, name: str, prefix: str):
    """On ``name``, Slurm's plugin directory lacks the plugins whose file names start with
    ``prefix`` (``mpi_pmix``: a build or package without PMIx support): in the node's mount
    namespace the directory is a tmpfs of links to the others, the real one bound beside it."""
    require_local(engine)
    node = engine.cluster.node(name)
    plugin_dir = slurm_probe.config_value(node, "PluginDir")
    if not plugin_dir or not any(p.name.startswith(prefix) for p in Path(plugin_dir).glob("*.so")):
        raise ValueError(f"no {prefix}* plugin in {plugin_dir or 'Slurm PluginDir'}: the fault would change nothing")
    real = engine.node_paths(name).root / "fault-plugins"
    real.mkdir(exist_ok=True)
    d, r = shlex.quote(plugin_dir), shlex.quote(str(real))
    try:
        with mounted_on_node(node, str(real), "--bind", plugin_dir), mounted_on_node(node, plugin_dir, "-t", "tmpfs",
                                                                                      "hpcv-fault"):
            node.run(f"for f in {r}/*; do case ${{f##*/}} in {shlex.quote(prefix)}*) ;; *) ln -s \"$f\" {d}/ ;; esac; "
                     "done", timeout=30).check()
            yield
    finally:
        real.rmdir()

