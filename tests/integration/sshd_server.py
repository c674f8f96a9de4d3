"""A throwaway OpenSSH server on 127.0.0.1 for tests and benchmarks (needs root and sshd).

Generates its own host key and client key in a directory, starts ``sshd -D`` on a free
port, and on :meth:`ThrowawaySshd.stop` kills it together with every process it spawned:
per-connection sshd children call setsid(), so killing the listener alone leaves them, and
a command that outlived its connection (sshd refuses to signal root sessions) is found by
the SSH_CONNECTION variable in its environment.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Self

SSHD = Path("/usr/sbin/sshd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> str:
    """Generate an ed25519 key at ``path``; return the public key line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, parents before their children."""
    children = _children_map()
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(0), []):
            found.append(child)
            todo.append(child)
    return found


def session_processes(port: int) -> list[int]:
    """Processes started by an sshd listening on ``port`` (their SSH_CONNECTION names it).

    Catches commands that outlived their connection and were re-parented away from sshd.
    """
    suffix = f" {port}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(v.startswith(b"SSH_CONNECTION=") and v.endswith(suffix) for v in environ):
            found.append(int(entry))
    return found


def is_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class ThrowawaySshd:
    """``with ThrowawaySshd(tmpdir) as sshd: ...`` -> ``sshd.port``, ``sshd.client_key``, ..."""

    def __init__(self, directory: Path, extra_config: Sequence[str] = (), plain_shell: bool = True):
        """``plain_shell``: commands skip root's ~/.bashrc (sshd's bash sources it unless SHLVL
        says it is nested). The development machines' .bashrc runs ``pyenv init``, whose rehash
        lock a killed shell leaves behind; every later command then waits 60 s for it (a
        transport test's ``echo`` timed out that way in CI). The local provider's nodes do the
        same (providers/local/sshconf.py)."""
        self.dir = Path(directory)
        self.extra_config = (["SetEnv SHLVL=1"] if plain_shell else []) + list(extra_config)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host_key = self.dir / "ssh_host_ed25519_key"
        self.client_key = self.dir / "id_ed25519"
        self.authorized_keys = self.dir / "authorized_keys"
        self.config = self.dir / "sshd_config"
        self.log = self.dir / "sshd.log"
        self.pid_file = self.dir / "sshd.pid"
        self.port = 0
        self.host_pubkey = ""
        self.proc: subprocess.Popen | None = None

    @property
    def known_hosts_line(self) -> str:
        """The line OpenSSH would write for this server (``[127.0.0.1]:port type key``)."""
        return f"[127.0.0.1]:{self.port} {self.host_pubkey}\n"

    def start(self, timeout: float = 10.0) -> Self:
        self.host_pubkey = " ".join(keygen(self.host_key).split()[:2])
        self.authorized_keys.write_text(keygen(self.client_key) + "\n")
        self.config.write_text(
            "\n".join(
                [
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "StrictModes no",
                    "UsePAM no",
                    "UseDNS no",
                    "PrintMotd no",
                    "LogLevel ERROR",
                    *self.extra_config,
                    "",
                ]
            )
        )
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation directory
        self.port = free_port()
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(self.config), "-p", str(self.port), "-o", f"PidFile={self.pid_file}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.proc.returncode}: {self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"sshd did not listen on 127.0.0.1:{self.port} within {timeout}s: {self.log.read_text()}")

    def stop(self) -> None:
        """Kill the listener and every process it spawned; idempotent."""
        if self.proc is None:
            return
        spawned = descendants(self.proc.pid)
        spawned += [p for p in session_processes(self.port) if p not in spawned]
        for pid in reversed(spawned):  # leaves first, so live parents reap them
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        deadline = time.monotonic() + 5
        while any(is_running(p) for p in spawned) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
