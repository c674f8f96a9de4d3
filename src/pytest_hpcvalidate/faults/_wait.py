"""Waiting for a fault (or its repair) to take effect, with a message when it does not."""

from __future__ import annotations

import time
from typing import Callable


def until(condition: Callable[[], bool], what: str, timeout: float = 30.0, poll_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {timeout:g}s")
        time.sleep(poll_s)
