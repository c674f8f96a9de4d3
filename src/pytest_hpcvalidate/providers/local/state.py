"""The state file: every resource a local cluster creates, recorded before it is created.

``<work_dir>/state.json`` is rewritten atomically (write a temporary file, rename) each time
a resource is added, so a crash at any point leaves a file that lists at least everything
that exists. Resources are recorded *before* they are made (an intent log): undoing a
resource that was never made is a no-op, while a resource made but not recorded would leak.

Resource kinds (``kind`` key):

- ``workdir``  ``path``                      the cluster's work directory (removed last)
- ``bridge``   ``name``                      the bridge device
- ``netns``    ``name``                      a node's network namespace
- ``veth``     ``name``                      the host side of a node's veth pair
- ``cgroup``   ``path``                      a per-node cgroup subtree (host path)
- ``process``  ``pid``, ``start``, ``node``, ``what``   a process (``start``: /proc start time)
- ``mount``    ``path``                      a mount in the host mount namespace
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"
VERSION = 1


def proc_start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat`` (start time in clock ticks), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    try:
        return int(data[data.rindex(b")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


def same_process(pid: int, start: int | None) -> bool:
    """True when ``pid`` is alive and is the process recorded (not a recycled pid)."""
    now = proc_start_time(pid)
    return now is not None and (start is None or now == start)


class State:
    """The state of one cluster, mirrored to ``<work_dir>/state.json`` on every change."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = Path(path)
        self.data = data
        self._lock = threading.Lock()

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def create(cls, work_dir: Path, cluster: str, **meta: Any) -> State:
        data = {
            "version": VERSION,
            "cluster": cluster,
            "work_dir": str(work_dir),
            "created": time.time(),
            "owner": {"pid": os.getpid(), "start": proc_start_time(os.getpid())},
            "meta": meta,
            "resources": [],
            "nodes": {},
            "ready": False,
        }
        return cls(Path(work_dir) / STATE_FILE, data)

    @classmethod
    def load(cls, path: Path) -> State:
        path = Path(path)
        return cls(path, json.loads(path.read_text()))

    # -- access ---------------------------------------------------------------------------
    @property
    def cluster(self) -> str:
        return self.data["cluster"]

    @property
    def work_dir(self) -> Path:
        return Path(self.data["work_dir"])

    @property
    def resources(self) -> list[dict[str, Any]]:
        return self.data["resources"]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["kind"] == kind]

    def owner_alive(self) -> bool:
        owner = self.data.get("owner") or {}
        return bool(owner.get("pid")) and same_process(owner["pid"], owner.get("start"))

    # -- mutation -------------------------------------------------------------------------
    def add(self, kind: str, **fields: Any) -> dict[str, Any]:
        return self.add_many([dict(kind=kind, **fields)])[0]

    def add_many(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        with self._lock, self._file_lock():
            self._reload()
            self.resources.extend(items)
            self._save()
        return items

    def add_process(self, pid: int, node: str, what: str) -> dict[str, Any]:
        return self.add_processes([(pid, node, what)])[0]

    def add_processes(self, items: list[tuple[int, str, str]]) -> list[dict[str, Any]]:
        """Record started processes (pid, node, what) with their start times, in one write."""
        return self.add_many([dict(kind="process", pid=pid, start=proc_start_time(pid), node=node, what=what)
                              for pid, node, what in items])

    def set(self, key: str, value: Any) -> None:
        with self._lock, self._file_lock():
            self._reload()
            self.data[key] = value
            self._save()

    def save(self) -> None:
        with self._lock, self._file_lock():
            self._save()

    # another process (an xdist worker that attached, a fault injector) may have recorded
    # something since we last wrote: writes are read-modify-write under an flock
    def _file_lock(self):
        return _Flock(self.path.with_name(".state.lock"))

    def _reload(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        if (st.st_mtime_ns, st.st_size) == getattr(self, "_written", None):
            return
        try:
            disk = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        if disk.get("cluster") == self.data.get("cluster") and disk.get("created") == self.data.get("created"):
            self.data = disk

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        # dumps (C encoder) + one write: this runs once per recorded step
        text = json.dumps(self.data, separators=(",", ":"))
        with open(tmp, "w") as fh:
            fh.write(text)
        os.replace(tmp, self.path)
        st = os.stat(self.path)
        self._written = (st.st_mtime_ns, st.st_size)


class _Flock:
    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def __enter__(self):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError:
            self.fd = None
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)
        return False


def state_files(state_root: Path, cluster: str | None = None) -> list[Path]:
    """The state files under ``state_root`` (one directory per cluster)."""
    root = Path(state_root)
    if cluster is not None:
        path = root / cluster / STATE_FILE
        return [path] if path.is_file() else []
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob(f"*/{STATE_FILE}") if p.is_file())


def sweep_recorded(state_root: Path, cluster: str | None, teardown, swept, names: set[str] = frozenset()) -> list[str]:
    """Tear down every cluster recorded under ``state_root`` (or only ``cluster``), for any
    provider: ``teardown(state)`` undoes a state's resources and returns its problems;
    ``swept(name, root)`` is a :class:`State` of what is still there found by name (a run may
    have made something before it could record it), torn down last. A run still in progress
    (its owner process alive) is left alone unless named. ``names``: more clusters to sweep
    besides those with a state file. Returns the problems, one line each, prefixed by cluster."""
    root = Path(state_root)
    todo = [cluster] if cluster else sorted({p.parent.name for p in state_files(root)} | set(names))
    errors: list[str] = []
    for name in todo:
        problems: list[str] = []
        in_use = False
        for path in state_files(root, name):
            try:
                state = State.load(path)
            except (OSError, ValueError) as exc:  # the sweep by name below still runs
                problems.append(f"{path}: unreadable state file ({exc})")
                continue
            owner = (state.data.get("owner") or {}).get("pid")
            if cluster is None and state.owner_alive() and owner != os.getpid():
                errors.append(f"{name}: in use by the run in process {owner}; left alone "
                              f"(end it with: python -m pytest_hpcvalidate cleanup --cluster {name})")
                in_use = True
                break
            problems += teardown(state)
        if in_use:
            continue
        if not any("still alive" in p for p in problems):
            left = swept(name, root)
            if left.resources:
                problems = teardown(left)  # what is still there, found by name: the final word
        errors += [f"{name}: {p}" for p in problems]
    return errors
