#!/usr/bin/env python3
"""Per-command latency of the transports: median and p99 of ``true`` over N calls.

Rows:
  ssh            SSHTransport over one reused connection (TCP_NODELAY) to a throwaway sshd
                 on 127.0.0.1 (tests/integration/sshd_server.py; no ForceCommand)
  ssh-nagle      the same with TCP_NODELAY cleared, to show what it saves
  ssh-norc       ssh, but the channel sends SHLVL=1 (the bench sshd has ``AcceptEnv SHLVL``),
                 so bash skips ~/.bashrc: the transport's own cost
  ssh-norc-nagle ssh-norc with TCP_NODELAY cleared
  nsenter        NsenterTransport into a ``sleep`` in a temporary network namespace
                 (``ip netns add hpcvbench-<pid>``; deleted afterwards)
  local          LocalTransport (``/bin/sh -c``)
  login-shell    LocalTransport running ``bash -c true`` as sshd would start it (SSH_CLIENT set,
                 so bash sources ~/.bashrc): the remote shell's share of the ssh row

Over SSH the command runs in the remote user's login shell, and that shell is what it is:
root's ~/.bashrc on the development machines runs ``pyenv init`` (~90 ms), which bash sources
for commands started by sshd. The ssh row therefore measures this machine's root account,
not the transport alone; compare it with the login-shell row. Needs root, sshd, iproute2.

    sudo .venv/bin/python bench/bench_transport.py [-n 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests" / "integration")]

from sshd_server import ThrowawaySshd

from pytest_hpcvalidate.transport.base import Transport
from pytest_hpcvalidate.transport.local import LocalTransport
from pytest_hpcvalidate.transport.nsenter import NsenterTransport
from pytest_hpcvalidate.transport.ssh import SSHTransport

WARMUP = 5


def measure(run: Callable[[], object], calls: int) -> dict[str, float]:
    """Median and p99 (ms) of ``calls`` runs after a short warm-up."""
    for _ in range(WARMUP):
        run()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 3),
        "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 3),
        "min_ms": round(samples[0], 3),
        "calls": calls,
    }


def checked(transport: Transport, command: str = "true") -> Callable[[], object]:
    return lambda: transport.run(command, timeout=30).check()


class _BenchSSHTransport(SSHTransport):
    """SSHTransport with bench knobs: TCP_NODELAY cleared (paramiko's default), SHLVL sent."""

    def __init__(self, *args, nagle: bool = False, norc: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.nagle, self.norc = nagle, norc

    def _open_socket(self):  # type: ignore[override]
        sock = super()._open_socket()
        if self.nagle:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        return sock

    def _open_session(self):  # type: ignore[override]
        chan = super()._open_session()
        if self.norc:  # bash sources ~/.bashrc for sshd only at SHLVL < 2; this makes it 2
            chan.set_environment_variable("SHLVL", "1")
        return chan


SSH_ROWS = {
    "ssh": {},
    "ssh-nagle": {"nagle": True},
    "ssh-norc": {"norc": True},
    "ssh-norc-nagle": {"norc": True, "nagle": True},
}


@contextmanager
def sshd_transports(tmp: Path) -> Iterator[dict[str, _BenchSSHTransport]]:
    """One connected-on-first-use transport per SSH row, all to one throwaway sshd."""
    with ThrowawaySshd(tmp / "sshd", extra_config=["AcceptEnv SHLVL"], plain_shell=False) as sshd:
        known_hosts = tmp / "known_hosts"
        known_hosts.write_text(sshd.known_hosts_line)
        transports = {
            name: _BenchSSHTransport(
                name, "127.0.0.1", port=sshd.port, key_file=sshd.client_key, known_hosts=known_hosts, **knobs
            )
            for name, knobs in SSH_ROWS.items()
        }
        try:
            yield transports
        finally:
            for t in transports.values():
                t.close()


@contextmanager
def netns_anchor() -> Iterator[int]:
    """A ``sleep`` inside a temporary network namespace; namespace and process removed after."""
    name = f"hpcvbench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    proc = None
    try:
        proc = subprocess.Popen(["ip", "netns", "exec", name, "sleep", "3600"])
        deadline = time.monotonic() + 5
        while Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[0] != b"sleep":
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"ip netns exec {name} sleep did not start")
            time.sleep(0.01)
        yield proc.pid
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "netns", "delete", name], check=True)


def bench(calls: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hpcvbench-")))
        ssh = stack.enter_context(sshd_transports(tmp))
        anchor = stack.enter_context(netns_anchor())
        local = LocalTransport()
        rows: dict[str, Callable[[], object]] = {name: checked(t) for name, t in ssh.items()}
        rows["nsenter"] = checked(NsenterTransport("nsenter", anchor))
        rows["local"] = checked(local)
        rows["login-shell"] = checked(local, "env -u SHLVL SSH_CLIENT='127.0.0.1 1 22' bash -c true")
        for name, run in rows.items():
            results[name] = measure(run, calls)
        # each SSH row really reused one connection
        assert all(t.connection is not None and t.connection.is_active() for t in ssh.values())
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--calls", type=int, default=200, help="timed calls per transport (default 200)")
    parser.add_argument("--json", action="store_true", help="write the results as JSON to stdout")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root (sshd, ip netns, nsenter)")
    results = bench(args.calls)
    if args.json:
        info = {"host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count()}
        json.dump({"machine": info, "command": "true", "results": results}, sys.stdout, indent=2)
        print()
        return 0
    print(f"`true` x {args.calls} (after {WARMUP} warm-up calls), milliseconds")
    print(f"{'transport':<15} {'median':>9} {'p99':>9} {'min':>9}")
    for name, r in results.items():
        print(f"{name:<15} {r['median_ms']:>9.2f} {r['p99_ms']:>9.2f} {r['min_ms']:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
