"""The evidence of a test: the commands it ran on the cluster and the numbers it measured,
written as Allure steps in the order they happened.

Commands arrive through ``cluster.COMMAND_OBSERVERS`` (every ``Node.run``), often from the
worker threads of ``Cluster.run_all``. allure-pytest's step stack must not be touched from
those threads (a step opened in one thread becomes the parent of a step opened in another),
so :class:`EvidenceLog` only collects while a test phase runs; the report plugin writes the
collected events as steps at the end of the phase, from pytest's own thread, with their real
start and stop times.

A command step shows the node, the command, the exit code and the duration. Its stdout and
stderr are attached when the phase failed (or with ``--hpc-attach-output``); every command
line and output passes through :func:`redact.redact` first.
"""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Union

from ..transport import CommandResult
from .attach import attach_json, attach_text
from .metrics import Metric, MetricFailure, num
from .redact import redact

#: steps written per test phase; a check that runs more commands gets one summary step for the rest
MAX_STEPS = 200
#: an attachment keeps the last this many characters of an output (where errors usually are)
OUTPUT_LIMIT = 64 * 1024
#: a step title shows at most this much of the command; the whole command is a step parameter
TITLE_COMMAND_LIMIT = 120


@dataclass(frozen=True)
class CommandEvent:
    result: CommandResult
    start: float  # epoch seconds
    stop: float


@dataclass(frozen=True)
class MetricEvent:
    metric: Metric
    start: float

    @property
    def stop(self) -> float:
        return self.start


Event = Union[CommandEvent, MetricEvent]


class EvidenceLog:
    """Collects the events of the running test phase (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._active = False
        self._paused = 0

    @property
    def active(self) -> bool:
        return self._active

    def begin(self) -> None:
        with self._lock:
            self._events.clear()
            self._active = True

    def observe(self, result: CommandResult, stop: float | None = None) -> None:
        """The ``cluster.COMMAND_OBSERVERS`` callback (any thread); ``stop``: when the command
        ended, if not just now (a replayed command run ahead for this test)."""
        if not self._active or self._paused:
            return
        stop = time.time() if stop is None else stop
        with self._lock:
            self._events.append(CommandEvent(result, stop - result.duration_s, stop))

    def add_metric(self, metric: Metric) -> None:
        with self._lock:
            self._events.append(MetricEvent(metric, time.time()))

    def end(self) -> list[Event]:
        """Stop collecting; the phase's events, oldest first."""
        with self._lock:
            events, self._events = self._events, []
            self._active = False
        return sorted(events, key=lambda e: e.start)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Commands run meanwhile (the run's own bookkeeping) are not the test's evidence."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1


# ----------------------------------------------------------------------------- Allure steps
class _StepBroken(Exception):
    """Marks a step broken (a command that timed out)."""


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _step_object(step_uuid: str):
    """The allure-pytest step being written (to set its real times), or None."""
    from allure_commons import plugin_manager

    for plugin in plugin_manager.get_plugins():
        logger = getattr(plugin, "allure_logger", None)
        if logger is not None:
            return logger.get_item(step_uuid)
    return None


@contextmanager
def step(title: str, params: dict[str, object], start: float, stop: float,
         failure: BaseException | None = None) -> Iterator[None]:
    """An Allure step with real start/stop times; ``failure`` sets its status (an
    AssertionError: failed, anything else: broken). A no-op without an Allure listener."""
    from allure_commons import plugin_manager

    step_uuid = str(uuid.uuid4())
    plugin_manager.hook.start_step(uuid=step_uuid, title=title, params={k: str(v) for k, v in params.items()})
    obj = _step_object(step_uuid)
    try:
        yield
    finally:
        plugin_manager.hook.stop_step(uuid=step_uuid, exc_type=type(failure) if failure else None,
                                      exc_val=failure, exc_tb=None)
        if obj is not None:
            obj.start, obj.stop = _ms(start), _ms(stop)


def command_title(result: CommandResult, phase: str = "call") -> str:
    command = " ".join(redact(result.command).split())
    if len(command) > TITLE_COMMAND_LIMIT:
        command = command[: TITLE_COMMAND_LIMIT - 1] + "…"
    how = f"timed out after {result.duration_s:.2f}s" if result.timed_out else f"exit {result.exit_code} in {result.duration_s:.2f}s"
    prefix = "" if phase == "call" else f"{phase}: "
    return f"{prefix}{result.node}: `{command}` → {how}"


def _tail(text: str) -> str:
    if len(text) <= OUTPUT_LIMIT:
        return text
    return f"[... {len(text) - OUTPUT_LIMIT} earlier characters left out ...]\n" + text[-OUTPUT_LIMIT:]


def write_command(event: CommandEvent, attach_output: bool, phase: str = "call") -> None:
    r = event.result
    params = {"node": r.node, "command": redact(r.command), "exit code": r.exit_code, "duration": f"{r.duration_s:.3f}s"}
    failure = _StepBroken(f"timed out after {r.duration_s:.2f}s") if r.timed_out else None
    with step(command_title(r, phase), params, event.start, event.stop, failure):
        if attach_output:
            for name, text in (("stdout", r.stdout), ("stderr", r.stderr)):
                if text:
                    attach_text(_tail(text), name, command=r.command)


def metric_title(m: Metric) -> str:
    bound = "" if m.threshold is None else f" ({m.op} {num(m.threshold)})"
    where = f" [{m.node}]" if m.node else ""
    verdict = "ok" if m.passed else "FAILED"
    return f"metric {m.name}{where}: {num(m.value)} {m.unit}{bound} {verdict}".replace("  ", " ")


def write_metric(m: Metric, at: float | None = None) -> None:
    """A step named after the metric (failed when it missed its threshold or regressed)
    holding the metric as a JSON attachment."""
    at = time.time() if at is None else at
    params = {"value": f"{num(m.value)} {m.unit}".strip()}
    if m.threshold is not None:
        params["threshold"] = f"{m.op} {num(m.threshold)} {m.unit}".strip()
    if m.baseline is not None:
        change = "" if m.change_pct is None else f" ({m.change_pct:+.1f}%)"
        params["baseline"] = f"{num(m.baseline)} {m.unit}{change}".replace("  ", " ").strip()
    with step(metric_title(m), params, at, at, None if m.passed else MetricFailure(m.message)):
        attach_json(m.to_dict(), f"metric {m.name}" + (f" [{m.node}]" if m.node else ""))


def write_steps(events: list[Event], attach_output: bool, phase: str = "call") -> None:
    """The phase's events as steps, at most :data:`MAX_STEPS` (then one summary step)."""
    for event in events[:MAX_STEPS]:
        if isinstance(event, MetricEvent):
            write_metric(event.metric, event.start)
        else:
            write_command(event, attach_output, phase)
    rest = events[MAX_STEPS:]
    if rest:
        commands = [e for e in rest if isinstance(e, CommandEvent)]
        nodes = sorted({e.result.node for e in commands})
        title = f"{len(rest)} more events not shown ({len(commands)} commands on {len(nodes)} nodes)"
        with step(title, {"nodes": ", ".join(nodes)[:2000]}, rest[0].start, rest[-1].stop):
            for m in (e.metric for e in rest if isinstance(e, MetricEvent)):
                write_metric(m)


def phase_failed(exc: BaseException | None) -> bool:
    """Whether a phase that ended with ``exc`` failed (a skip is not a failure)."""
    import pytest

    return exc is not None and not isinstance(exc, pytest.skip.Exception)
