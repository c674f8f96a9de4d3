"""Container faults on one node of a local cluster: the runtime gone, the image gone, the
runtime wrapped so that containers lose part of the job's environment.

Each acts only inside the node's mount namespace (the other nodes and the host keep theirs),
exactly what a node with a broken software stack, a missing image mount or a site wrapper
looks like, and each is undone by unmounting what it mounted.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil

from ..providers.local.addons.container_image import run_in_node
from . import require_local, wrapped_on_node


def _in_node(engine, node: str, script: str) -> None:
    proc = run_in_node(engine, node, script)
    if proc.returncode != 0:
        raise RuntimeError(f"fault on {node}: `{script}` failed: {proc.stderr.strip()}")


@contextlib.contextmanager
def runtime_missing(engine, node: str, program: str):
    """``program`` (e.g. ``ch-run``) on ``node`` replaced by an empty, non-executable file."""
    require_local(engine)
    path = shutil.which(program)
    if path is None:
        raise RuntimeError(f"{program} is not installed on this machine: nothing to take away")
    empty = engine.work_dir / "faults" / f"empty-{program}"
    empty.parent.mkdir(exist_ok=True)
    empty.write_text("")
    empty.chmod(0o644)
    _in_node(engine, node, f"mount --bind {shlex.quote(str(empty))} {shlex.quote(path)}")
    try:
        yield path
    finally:
        _in_node(engine, node, f"umount {shlex.quote(path)}")


@contextlib.contextmanager
def image_hidden(engine, node: str, image: str):
    """The image path on ``node`` covered by an empty tmpfs: the node has no image there."""
    require_local(engine)
    q = shlex.quote(image)
    _in_node(engine, node, f"mount -t tmpfs -o size=64k,mode=755 hpcv-fault-noimage {q}")
    try:
        yield
    finally:
        _in_node(engine, node, f"umount {q}")


def runtime_unsets(engine, node: str, glob: str, program: str = "ch-run"):
    """On ``node``, charliecloud's ``ch-run`` starts every container with ``--unset-env=<glob>``
    (a site wrapper that keeps host variables out: ``SLURM_*`` leaves every task thinking it is
    task 0, ``PMIX_*`` leaves MPI ranks without their PMIx server)."""
    return wrapped_on_node(engine, node, program, f'#!/bin/sh\nexec REAL --unset-env={shlex.quote(glob)} "$@"\n')

