"""munge facts: a credential made on one node decodes on another; the key file is private."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass


@dataclass(frozen=True)
class MungeDecode:
    encoder: str
    decoder: str
    ok: bool
    status: str  # "Success (0)" or the unmunge error / encode error

    def describe(self) -> str:
        return f"credential made on {self.encoder} {'decodes' if self.ok else 'does not decode'} on {self.decoder}: {self.status}"


def parse_unmunge(text: str) -> str:
    m = re.search(r"^STATUS:\s+(.*)$", text, re.M)
    return m.group(1).strip() if m else text.strip().splitlines()[-1] if text.strip() else "no output"


def cross_decode(encoder, decoder) -> MungeDecode:
    made = encoder.run("munge -n -t 120", timeout=20)
    if not made.ok:
        return MungeDecode(encoder.name, decoder.name, False, f"munge failed on {encoder.name}: {made.stderr.strip()}")
    got = decoder.run(f"printf '%s' {shlex.quote(made.stdout.strip())} | unmunge", timeout=20)
    status = parse_unmunge(got.stdout + "\n" + got.stderr)
    return MungeDecode(encoder.name, decoder.name, got.ok and status.startswith("Success"), status)


@dataclass(frozen=True)
class FileFacts:
    path: str
    exists: bool
    mode: int
    owner: str
    size: int
    #: why it could not be read, when the command failed (stderr, e.g. sudo refusing)
    error: str = ""


def stat_file(node, path: str) -> FileFacts:
    """Mode, owner and size of ``path`` (munge's directory is closed to other users: needs root)."""
    r = node.run(f"stat -c '%a %U %s' {shlex.quote(path)}", timeout=15, root=True)
    if not r.ok:
        return FileFacts(path, False, 0, "", 0, (r.stderr or r.stdout).strip()[-300:])
    mode, owner, size = r.stdout.split()
    return FileFacts(path, True, int(mode, 8), owner, int(size))


@dataclass(frozen=True)
class KeyFacts:
    """The key the running munged uses, and who runs it."""

    path: str
    daemon_user: str      # user munged runs as ("" when munged is not running)
    file: FileFacts

    def problems(self) -> list[str]:
        if not self.daemon_user:
            return ["munged is not running (no /run/munge/munged.pid or the process is gone)"]
        if not self.file.exists:
            if self.file.error and "No such file" not in self.file.error:
                return [f"cannot stat key file {self.path}: {self.file.error}"]
            return [f"key file {self.path} does not exist"]
        out = []
        if self.file.mode not in (0o400, 0o600):
            out.append(f"key file {self.path} has mode {self.file.mode:04o}, must be 0400 or 0600")
        if self.file.owner != self.daemon_user:
            out.append(f"key file {self.path} is owned by {self.file.owner}, munged runs as {self.daemon_user}")
        return out


DEFAULT_KEY = "/etc/munge/munge.key"
PID_FILE = "/run/munge/munged.pid"


def key_facts(node) -> KeyFacts:
    """Find munged by its pid file, read its ``--key-file`` (default /etc/munge/munge.key)."""
    script = (
        f"p=$(cat {PID_FILE} 2>/dev/null) && [ -d /proc/$p ] || exit 3; "
        "stat -c 'USER %U' /proc/$p; tr '\\0' '\\n' < /proc/$p/cmdline"
    )
    r = node.run(script, timeout=15)
    if not r.ok:
        return KeyFacts(DEFAULT_KEY, "", FileFacts(DEFAULT_KEY, False, 0, "", 0))
    user, path = "", DEFAULT_KEY
    for line in r.stdout.splitlines():
        if line.startswith("USER "):
            user = line[5:].strip()
        elif line.startswith("--key-file="):
            path = line.split("=", 1)[1]
    return KeyFacts(path, user, stat_file(node, path))
