"""Secrets never reach an attachment: munge keys, private keys, passwords, tokens."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess

import pytest

from pytest_hpcvalidate.report.redact import MASK, redact

KEY = bytes(range(256)) * 3 + os.urandom(256)  # every byte value, and some random ones


def _leaks(secret: str, text: str, window: int = 12) -> list[str]:
    """Substrings of ``secret`` (``window`` long, no whitespace) that survive in ``text``."""
    pieces = {secret[i:i + window] for i in range(0, max(1, len(secret) - window + 1))}
    return [p for p in pieces if p.strip() == p and len(p.strip()) == window and p in text]


def test_raw_munge_key_bytes_are_masked():
    out = redact(b"$ cat /etc/munge/munge.key\n" + KEY + b"\n$ echo done\ndone\n", environ={})
    assert MASK in out
    assert out.startswith("$ cat /etc/munge/munge.key\n")
    assert out.endswith("$ echo done\ndone\n")
    assert not _leaks(KEY.decode("latin-1"), out)
    assert not _leaks(KEY.decode("utf-8", errors="replace"), out)


def test_binary_data_is_masked_without_a_munge_mention():
    out = redact(b"before\n" + KEY + b"\nafter", environ={})
    assert out.startswith("before\n") and out.endswith("\nafter")
    assert MASK in out and len(out) < 100


def test_base64_munge_key_after_a_read_is_masked_and_following_output_kept():
    b64 = base64.encodebytes(KEY).decode()
    out = redact(f"$ base64 /etc/munge/munge.key\n{b64}$ hostname\nc1\n", environ={})
    assert out == f"$ base64 /etc/munge/munge.key\n{MASK} (munge key material)\n$ hostname\nc1\n"


def test_output_of_a_command_that_reads_the_munge_key_is_key_material():
    b64 = base64.encodebytes(KEY).decode()
    assert redact(b64, environ={}, context="base64 /etc/munge/munge.key") == f"{MASK} (munge key material)\n"
    assert redact(b64, environ={}, context="base64 /tmp/other") == b64  # nothing says it is a key
    assert redact("0400 munge 1024\n", environ={}, context="stat -c '%a %U %s' munge.key") == "0400 munge 1024\n"


def test_munge_key_on_the_same_line_and_as_a_setting():
    b64 = base64.b64encode(KEY[:64]).decode()
    assert redact(f"/etc/munge/munge.key: {b64}", environ={}) == f"/etc/munge/munge.key: {MASK}"
    assert b64 not in redact(f'munge_key: "{b64}"', environ={})


@pytest.mark.skipif(shutil.which("xxd") is None or shutil.which("od") is None, reason="requires xxd and od")
def test_hex_dumps_of_the_munge_key_are_masked(tmp_path):
    key = tmp_path / "munge.key"
    key.write_bytes(KEY)
    for tool in ("xxd", "od -A x -t x1z", "hexdump -C"):
        if shutil.which(tool.split()[0]) is None:
            continue
        dump = subprocess.run(f"{tool} {key}", shell=True, capture_output=True, text=True, check=True).stdout
        out = redact(f"# {tool} /etc/munge/munge.key\n{dump}ok\n", environ={})
        assert out == f"# {tool} /etc/munge/munge.key\n{MASK} (munge key material)\nok\n", tool


@pytest.mark.parametrize("kind", ["OPENSSH PRIVATE KEY", "RSA PRIVATE KEY", "PRIVATE KEY", "ENCRYPTED PRIVATE KEY"])
def test_private_key_blocks_are_masked(kind):
    body = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACDx2w8sFhNsCXWXZQ=="
    text = f"key:\n-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\npublic part stays"
    out = redact(text, environ={})
    assert "b3BlbnNzaC1rZXk" not in out and "QyNTUxOQ" not in out
    assert out == f"key:\n-----BEGIN {kind}----- {MASK} -----END {kind}-----\npublic part stays"


def test_a_private_key_cut_off_before_its_end_is_masked_to_the_end():
    out = redact("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5v\nbmUAAAAE", environ={})
    assert "b3Blbn" not in out and "bmUAAAAE" not in out


@pytest.mark.parametrize(
    "text, secret",
    [
        ("password=hunter2", "hunter2"),
        ("mysql --password=hunter2 -u root", "hunter2"),
        ("StoragePass: s3cr3t!", "s3cr3t!"),
        ("passwd: hunter2", "hunter2"),
        ('password="correct horse"', "correct horse"),
        ('{"db_password": "hunter2", "user": "slurm"}', "hunter2"),
        ("export GITLAB_TOKEN=glpat-abcdef123456", "glpat-abcdef123456"),
        ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG", "wJalrXUtnFEMI/K7MDENG"),
        ("slurmdbd: StoragePassword=pw-1234", "pw-1234"),
        ("git clone https://deploy:tok3n@git.example/x.git", "tok3n"),
    ],
)
def test_passwords_and_tokens_are_masked(text, secret):
    out = redact(text, environ={})
    assert secret not in out, out
    assert MASK in out


def test_context_around_secrets_is_kept():
    out = redact('{"db_password": "hunter2", "user": "slurm"}', environ={})
    assert out == '{"db_password": ' + MASK + ', "user": "slurm"}'


def test_values_of_secret_environment_variables_are_masked_anywhere():
    env = {"CI_JOB_TOKEN": "tok-98765", "MY_SECRET": "abcdefgh", "HOME": "/root", "SHORT_TOKEN": "ab"}
    out = redact("header tok-98765 and abcdefgh in /root, ab", environ=env)
    assert out == f"header {MASK} and {MASK} in /root, ab"


def test_process_environment_is_the_default(monkeypatch):
    monkeypatch.setenv("HPCV_TEST_PASSWORD", "zz-secret-zz")
    assert "zz-secret-zz" not in redact("value zz-secret-zz")


def test_ordinary_output_is_unchanged():
    text = (
        "PING 10.9.0.11 (10.9.0.11) 56(84) bytes of data.\n"
        "NodeName=c1 Arch=x86_64 CoresPerSocket=1 State=IDLE\n"
        "config sha256 " + "ab" * 32 + "\n"
        "tokens: 3\tpasses: 2\n"
    )
    assert redact(text, environ={}) == text.replace("tokens: 3", f"tokens: {MASK}")


def test_long_inputs_stay_fast():
    import time

    text = ("x" * 200_000) + " " + ("a1" * 100_000) + "\n" + "word " * 50_000
    start = time.monotonic()
    assert redact(text, environ={}) == text
    assert time.monotonic() - start < 2


def test_newline_bytes_of_a_raw_munge_key_are_part_of_its_mask():
    """``cat munge.key``: the random key holds newline bytes, first or between other bytes; they
    fold into the one mask line rather than leave blank lines around it (the evidence test's
    random key began with one about once in 256 runs)."""
    key = b"\n" + bytes(range(1, 10)) + b"\x80\xff\n\n" + bytes(range(200, 256)) + b"\n"
    assert redact(key, context="cat /etc/munge/munge.key") == "[REDACTED] (munge key material)\n"
