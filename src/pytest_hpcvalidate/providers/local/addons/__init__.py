"""Optional parts of a local cluster, built after the base cluster is ready.

The base engine (``engine.py``) makes the network, namespaces, munge, Slurm and sshd. What a
config may add on top (a distributed filesystem, a container image, ...) is an *addon*: one
module in this folder exposing an object with

- ``name``: short word shown in progress and errors (``"glusterfs"``),
- ``applies(spec) -> bool``: whether this cluster wants it (reads ``spec.extra``),
- ``up(engine, progress) -> None``: build it on the running cluster; raise
  ``ProvisioningError`` with an operator-readable message when it cannot,
- ``down(engine) -> list[str]``: undo what ``up`` made that the base teardown does not
  remove by itself (processes in node namespaces and node mounts go with the namespaces);
  returns what could not be removed, never raises;
- optionally ``undo_recorded(state) -> list[str]``: the part of ``down`` that needs only the
  cluster's state file (what ``up`` made on the host and recorded there), so that ``cleanup``
  and ``destroy`` also undo it for a crashed or kept cluster; same contract as ``down``;
- optionally ``start(engine, progress) -> None``: called early, once the nodes' namespaces
  exist and munged runs (before Slurm starts; ``engine.cluster`` is not built yet), to launch
  daemons that take a while to settle, so that their wait overlaps the base start-up; ``up``
  then waits for them;
- optionally ``daemon_argv(engine, node, what) -> list[str] | None``: how the engine's
  ``start_daemon`` (re)starts a daemon this addon launched (None: not one of its own).

Addons run in the order of :data:`ADDONS`; ``down`` in reverse. The config reaches them
through ``LocalSpec.extra`` (``spec_from_config`` puts the validated sections there).
"""

from __future__ import annotations

import importlib
import time

#: "module:attribute" of every addon, in build order
ADDONS: list[str] = ["glusterfs:ADDON", "container_image:ADDON", "monitoring:ADDON"]


def load() -> list:
    out = []
    for ref in ADDONS:
        mod, _, attr = ref.partition(":")
        out.append(getattr(importlib.import_module(f"{__name__}.{mod}"), attr))
    return out


def start_all(engine, progress) -> None:
    for addon in load():
        start = getattr(addon, "start", None)
        if start is not None and addon.applies(engine.spec):
            start(engine, progress)


def up_all(engine, progress) -> None:
    for addon in load():
        if addon.applies(engine.spec):
            start = time.monotonic()
            progress("addon", "", addon.name)
            addon.up(engine, progress)
            engine.timings[f"addon_{addon.name}"] = round(time.monotonic() - start, 4)


def daemon_argv(engine, node: str, what: str) -> list[str] | None:
    """The command line of an addon's daemon ``what`` on ``node`` (None: no addon runs one)."""
    for addon in load():
        argv_of = getattr(addon, "daemon_argv", None)
        if argv_of is not None and addon.applies(engine.spec):
            argv = argv_of(engine, node, what)
            if argv:
                return argv
    return None


def stop_daemons(engine, daemons: list[tuple[str, str]], timeout: float = 5.0) -> list[str]:
    """Stop each (node, what) daemon in order (SIGTERM, then SIGKILL after ``timeout``); what
    could not be stopped, for an addon's ``down`` to return."""
    errors: list[str] = []
    for node, what in daemons:
        try:
            engine.stop_daemon(node, what, timeout=timeout)
        except Exception as exc:  # teardown goes on; the error is reported
            errors.append(f"stopping {what} on {node}: {exc}")
    return errors


def down_all(engine) -> list[str]:
    errors: list[str] = []
    for addon in reversed(load()):
        try:
            if addon.applies(engine.spec):
                errors += addon.down(engine)
        except Exception as exc:  # teardown goes on; the error is reported
            errors.append(f"{addon.name}: {exc}")
    return errors


def undo_recorded_all(state) -> list[str]:
    """Every addon's ``undo_recorded`` on ``state`` (the base teardown's last step)."""
    errors: list[str] = []
    for addon in reversed(load()):
        undo = getattr(addon, "undo_recorded", None)
        if undo is None:
            continue
        try:
            errors += undo(state)
        except Exception as exc:  # teardown goes on; the error is reported
            errors.append(f"{addon.name}: {exc}")
    return errors
