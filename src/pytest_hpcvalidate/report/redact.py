"""Masking secrets before anything leaves the run (Allure attachments, sign-off evidence).

``redact(text)`` masks:

- private keys: ``-----BEGIN ... PRIVATE KEY-----`` blocks (also a block cut off before its END line);
- the munge key: binary data anywhere, and base64/hex key material on the lines after a
  read of ``munge.key`` (``cat``/``base64``/``xxd``/``od`` of the file) or on the same line;
- ``password=…`` / ``passwd: …`` / ``*TOKEN*=…`` / ``*SECRET*: …`` values (also quoted and in JSON);
- credentials in URLs (``scheme://user:secret@host``);
- the values of this process's environment variables named ``*TOKEN*``, ``*SECRET*``,
  ``*PASSWORD*``/``*PASSWD*`` wherever they appear.

It errs on the side of masking: a reviewer loses a word of context, never a secret.
"""

from __future__ import annotations

import os
import re
from typing import Mapping

MASK = "[REDACTED]"

_PRIVATE_KEY = re.compile(
    r"-----BEGIN (?P<kind>[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?)-----"
    r".*?"
    r"(?:-----END (?P=kind)-----|\Z)",
    re.DOTALL,
)

#: characters that never occur in text a command prints on purpose (C0/C1 controls except
#: tab/newline/carriage return, DEL, and U+FFFD from decoding bytes that were not UTF-8)
_BIN = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd"
#: a run of binary data: binary characters with short printable gaps between them (random
#: bytes hold a control character every few bytes); widened to the words it starts and ends in
_BINARY_RUN = re.compile(rf"[{_BIN}](?:[^{_BIN}]{{0,48}}[{_BIN}])*")
_HAS_BINARY = re.compile(rf"[{_BIN}]")

#: a setting's name that says its value is secret (``StoragePass``: "pass" only at the end)
_SECRET_NAME = (
    r"(?<![\w.-])[\w.-]{0,64}(?:(?:pass(?:word|wd|phrase)|secret|token|munge[_.-]?key|private[_.-]?key|api[_.-]?key)[\w.-]{0,64}|pass)"
)
_SECRET_ASSIGNMENT = re.compile(
    rf"(?P<name>{_SECRET_NAME})(?P<sep>[\"']?[ \t]*[=:][ \t]*)(?!\[REDACTED)(?P<value>\"[^\"\n]*\"|'[^'\n]*'|[^\s,;}}\]]+)",
    re.IGNORECASE,
)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]{0,31}://)(?P<user>[^\s/:@]+):(?P<secret>[^\s/@]+)@", re.I)

_MUNGE_MENTION = re.compile(r"munge\.key", re.IGNORECASE)
#: a line of key material as cat/base64/xxd/od/hexdump print it
_KEY_LINE = re.compile(
    r"^\s*(?:"
    r"[A-Za-z0-9+/]{16,}={0,2}"  # base64
    r"|(?:[0-9a-f]{6,8}:?\s+)?(?:[0-9a-f]{2,4}\s+){4,}.*"  # xxd / od -x / hexdump -C
    r"|[0-9a-f]{32,}"  # a plain hex string
    r"|[0-9a-f]{6,8}:?"  # the offset line closing od/hexdump output
    rf"|.*[{_BIN}].*"  # raw bytes
    r")\s*$",
    re.IGNORECASE,
)
_SAME_LINE_BLOB = re.compile(r"(?P<head>munge\.key\S*[ \t:=]+)(?P<blob>[A-Za-z0-9+/]{16,}={0,2}|[0-9a-f]{32,})", re.I)

_ENV_SECRET = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD", re.IGNORECASE)


def redact(text: str | bytes, environ: Mapping[str, str] | None = None, context: str = "") -> str:
    """``text`` with every secret masked. Bytes are decoded as UTF-8 (undecodable bytes
    count as binary data and are masked). ``environ`` defaults to ``os.environ``.
    ``context``: the command that printed ``text``; one that names the munge key makes the
    output's leading key-like lines key material (``base64 /etc/munge/munge.key``)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not text:
        return text
    text = _PRIVATE_KEY.sub(lambda m: f"-----BEGIN {m['kind']}----- {MASK} -----END {m['kind']}-----", text)
    text = _redact_munge(text, after_mention=bool(_MUNGE_MENTION.search(context)))
    text = _redact_binary(text)
    text = _SECRET_ASSIGNMENT.sub(lambda m: f"{m['name']}{m['sep']}{MASK}", text)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    return _redact_env_values(text, os.environ if environ is None else environ)


def _redact_munge(text: str, after_mention: bool = False) -> str:
    if not after_mention and not _MUNGE_MENTION.search(text):
        return text
    text = _SAME_LINE_BLOB.sub(lambda m: f"{m['head']}{MASK}", text)
    lines = text.split("\n")
    out: list[str] = []
    masked = f"{MASK} (munge key material)"
    for i, line in enumerate(lines):
        if after_mention and line.strip() and _KEY_LINE.match(line) and not _MUNGE_MENTION.search(line):
            if not out or out[-1] != masked:
                out.append(masked)
            continue
        if after_mention and not line.strip() and (not out or out[-1] == masked) and i < len(lines) - 1:
            # a newline byte of the raw key (before its first masked line, or between two):
            # part of the key material, not a line of the output's own
            continue
        out.append(line)
        if _MUNGE_MENTION.search(line):
            after_mention = True
        elif line.strip():
            # key material follows its mention directly; ordinary text ends the section
            after_mention = False
    return "\n".join(out)


def _redact_binary(text: str) -> str:
    if not _HAS_BINARY.search(text):
        return text
    spans: list[list[int]] = []
    for m in _BINARY_RUN.finditer(text):
        start, end = m.start(), m.end()
        while start > 0 and not text[start - 1].isspace():
            start -= 1
        while end < len(text) and not text[end].isspace():
            end += 1
        if spans and (start <= spans[-1][1] or not text[spans[-1][1]:start].strip()):
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    out: list[str] = []
    pos = 0
    for start, end in spans:
        out.append(text[pos:start])
        out.append(f"{MASK} (binary data)")
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _redact_env_values(text: str, environ: Mapping[str, str]) -> str:
    values = sorted(
        {v for k, v in environ.items() if _ENV_SECRET.search(k) and v and len(v) >= 4},
        key=len,
        reverse=True,
    )
    for value in values:
        text = text.replace(value, MASK)
    return text
