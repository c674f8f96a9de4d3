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


def stat_file(node, path: str) -> FileFacts:
    r = node.run(f"stat -c '%a %U %s' {shlex.quote(path)}", timeout=15)
    if not r.ok:
        return FileFacts(path, False, 0, "", 0)
    mode, owner, size = r.stdout.split()
    return FileFacts(path, True, int(mode, 8), owner, int(size))
