"""Run one argv as a local child process and turn it into a :class:`CommandResult`.

Shared by :mod:`.local` and :mod:`.nsenter`. The child gets its own session (process group)
so a timeout can kill the whole tree it started, not just the first process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence

from .base import CommandResult, TransportError

#: exit code reported for a command that ran past its timeout (as coreutils ``timeout`` does)
TIMEOUT_EXIT_CODE = 124

#: after a timeout kill, how long to wait for the pipes to close (a child that left the
#: process group may still hold them)
_DRAIN_AFTER_KILL_S = 5.0


def _decode(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_argv(
    node: str,
    argv: Sequence[str],
    command: str,
    timeout: float | None,
    env: Mapping[str, str] | None = None,
) -> CommandResult:
    """Run ``argv`` (which runs ``command``) and collect its output.

    A non-zero exit is a result, never an exception; a child killed by signal N reports
    ``128 + N`` like a shell. Only failing to start ``argv[0]`` raises :class:`TransportError`.
    """
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=None if env is None else dict(env),
        )
    except OSError as exc:
        raise TransportError(node, f"cannot start {argv[0]}: {exc}") from exc

    timed_out = False
    stdout: bytes | None
    stderr: bytes | None
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        try:
            stdout, stderr = proc.communicate(timeout=_DRAIN_AFTER_KILL_S)
        except subprocess.TimeoutExpired as exc:  # an escaped grandchild holds the pipes
            stdout, stderr = exc.stdout, exc.stderr
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
            proc.wait()
    except BaseException:  # KeyboardInterrupt and friends: leave nothing behind
        _kill_group(proc)
        proc.wait()
        raise

    code = proc.returncode
    return CommandResult(
        node=node,
        command=command,
        exit_code=TIMEOUT_EXIT_CODE if timed_out else (128 - code if code < 0 else code),
        stdout=_decode(stdout),
        stderr=_decode(stderr),
        duration_s=time.monotonic() - start,
        timed_out=timed_out,
    )
