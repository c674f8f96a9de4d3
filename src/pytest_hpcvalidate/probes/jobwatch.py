"""Follow one job's record from the moment it is submitted until it ends.

slurmctld forgets a finished job ``MinJobAge`` after its end (300 s by default, 60 on the
local provider); a check that looks at a job submitted long before it (the time-limit check's
job, submitted at the run's first test) would find nothing. A :class:`JobWatch` reads the
record every ``poll_s`` in a thread of its own and keeps the latest, and the first that was
no longer PENDING."""

from __future__ import annotations

import threading
import time
from typing import Callable

from ..cluster import captured_commands, replay
from .slurm import JobInfo, parse_job


class JobWatch:
    """Reads ``scontrol show job -o <job_id>`` from ``node`` every ``poll_s`` until the job
    is in a final state or :meth:`stop` is called. The reads are nobody's evidence until
    :meth:`wait` hands them to the running test."""

    def __init__(self, node, job_id: int, poll_s: float = 2.0):
        self.node, self.job_id, self.poll_s = node, job_id, poll_s
        self.last: JobInfo | None = None      # the latest record read
        self.started: JobInfo | None = None   # the first record that was no longer PENDING
        self.reads: list = []
        self._shown = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"hpcv-watch-job-{job_id}", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        with captured_commands() as self.reads:
            while not self._stop.is_set():
                r = self.node.run(f"scontrol show job -o {self.job_id}", timeout=15)
                info = parse_job(r.stdout) if r.ok else None
                if info is not None:
                    self.last = info
                    if self.started is None and info.state != "PENDING":
                        self.started = info
                    if info.final:
                        return
                self._stop.wait(self.poll_s)

    def wait(self, until: Callable[[JobInfo], bool], timeout: float) -> JobInfo | None:
        """The latest record once ``until(record)`` holds, or after ``timeout`` s (None where
        none was read); the reads since the last call become the running test's evidence."""
        deadline = time.monotonic() + timeout
        while not (self.last is not None and until(self.last)) and time.monotonic() < deadline:
            time.sleep(0.2)
        shown = self.reads[self._shown:]
        self._shown += len(shown)
        replay(shown)
        return self.last

    def stop(self) -> None:
        self._stop.set()
