"""The cluster's secrets: one munge key (copied per node) and SSH host and client keys.

The munge key is copied into every node's own directory so a fault injector can swap one
node's key (munge credential mismatch) without touching the others. munged runs as root
here, and munged insists that a root daemon's key be owned by root, mode 0400.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

MUNGE_KEY_BYTES = 1024


@dataclass(frozen=True)
class SshPaths:
    root: Path

    @property
    def host_key(self) -> Path:
        return self.root / "ssh_host_ed25519_key"

    @property
    def client_key(self) -> Path:
        return self.root / "id_ed25519"

    @property
    def authorized_keys(self) -> Path:
        return self.root / "authorized_keys"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def sshd_config(self) -> Path:
        return self.root / "sshd_config"


def write_secret(path: Path, data: bytes, mode: int = 0o400) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, mode)


def make_munge_keys(master: Path, node_keys: list[Path]) -> None:
    key = os.urandom(MUNGE_KEY_BYTES)
    write_secret(master, key)
    for p in node_keys:
        write_secret(p, key)


def start_ssh_keygen(ssh: SshPaths, cluster: str) -> list[subprocess.Popen]:
    """Generate the host and client keys concurrently; the caller waits on the processes."""
    ssh.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    procs = []
    for path, comment in ((ssh.host_key, f"hpcv-{cluster}-host"), (ssh.client_key, f"hpcv-{cluster}-client")):
        procs.append(
            subprocess.Popen(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                start_new_session=True,
            )
        )
    return procs
