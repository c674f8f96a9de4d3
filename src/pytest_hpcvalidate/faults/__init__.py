"""Fault injection for local clusters: break one thing on one node, then repair it.

Every suite check must be shown to go red when the thing it checks is broken. A fault is a
context manager taking the running :class:`~pytest_hpcvalidate.providers.local.engine.LocalCluster`
(the *engine*, which knows the node namespaces and daemons) and the node to break::

    with faults.slurmd_stopped(engine, "c1"):
        ...  # run the suite; the registration check must fail naming c1

Entering injects the fault and waits until it is in effect; leaving repairs it and waits until
the cluster is healthy again, so one cluster serves many fault tests. Faults exist only for
clusters this run created: there is no way to pass an attached or existing cluster here.

One module per concern: ``nodes`` (kernel, packages), ``network`` (links, MTU, names), ``slurm`` (daemons, munge, gres,
cgroups, MPI plugin); storage and container faults live beside their addons' concerns.
"""

from __future__ import annotations

import contextlib
import shlex
from pathlib import Path
from typing import Callable


def require_local(engine) -> None:
    """Refuse anything but a local cluster this process provisioned."""
    from ..providers.local.engine import LocalCluster

    if not isinstance(engine, LocalCluster) or engine.state is None:
        raise RuntimeError("fault injection needs a local cluster this run provisioned (never an existing one)")


@contextlib.contextmanager
def edited(path: Path, edit: Callable[[str], str]):
    """The file rewritten by ``edit`` while inside; its original text restored on the way out."""
    original = path.read_text()
    path.write_text(edit(original))
    try:
        yield
    finally:
        path.write_text(original)


@contextlib.contextmanager
def mounted_on_node(node, target: str, *mount_args: str):
    """``mount <mount_args> <target>`` in ``node``'s mount namespace only (the local
    provider's are private) while inside; unmounted on the way out."""
    q = shlex.quote(target)
    node.run(f"mount {' '.join(shlex.quote(a) for a in mount_args)} {q}", timeout=30).check()
    try:
        yield
    finally:
        node.run(f"umount {q}", timeout=30)


@contextlib.contextmanager
def wrapped_on_node(engine, name: str, program: str, wrapper: str):
    """On ``name``, ``program`` (found in /usr/bin or /bin) is replaced, in the node's mount
    namespace only, by the ``wrapper`` script, in which ``REAL`` names a copy of the real
    program."""
    import shutil

    require_local(engine)
    real = shutil.which(program, path="/usr/bin:/bin")
    if real is None:
        raise RuntimeError(f"no {program} in /usr/bin to wrap")
    folder = engine.work_dir / "faults"
    folder.mkdir(parents=True, exist_ok=True)
    copy, script = folder / f"{name}-{program}.real", folder / f"{name}-{program}.wrapper"
    shutil.copy2(real, copy)
    script.write_text(wrapper.replace("REAL", shlex.quote(str(copy))))
    script.chmod(0o755)
    try:
        with mounted_on_node(engine.cluster.node(name), real, "--bind", str(script)):
            yield
    finally:
        copy.unlink(missing_ok=True)
        script.unlink(missing_ok=True)

