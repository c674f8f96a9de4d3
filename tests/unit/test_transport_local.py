"""LocalTransport, NsenterTransport and the testinfra backend, against real processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from pytest_hpcvalidate.cluster import Node
from pytest_hpcvalidate.transport import TransportError
from pytest_hpcvalidate.transport._subprocess import run_argv
from pytest_hpcvalidate.transport.local import LocalTransport
from pytest_hpcvalidate.transport.nsenter import NsenterTransport
from pytest_hpcvalidate.transport.testinfra_backend import host_for


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def local() -> LocalTransport:
    return LocalTransport("here")


def test_local_stdout_stderr_and_exit_code(local: LocalTransport) -> None:
    r = local.run("echo out; echo err >&2; exit 7")
    assert (r.node, r.command) == ("here", "echo out; echo err >&2; exit 7")
    assert (r.exit_code, r.stdout, r.stderr, r.timed_out) == (7, "out\n", "err\n", False)
    assert not r.ok
    assert r.duration_s >= 0


def test_local_runs_through_sh(local: LocalTransport) -> None:
    r = local.run('a=1; [ "$a" = 1 ] && printf "%s|" x y')
    assert r.ok and r.stdout == "x|y|"


def test_local_invalid_utf8_is_replaced(local: LocalTransport) -> None:
    r = local.run(r"printf 'caf\351 ok'")
    assert r.stdout == "caf\ufffd ok"


def test_local_stdin_is_empty(local: LocalTransport) -> None:
    r = local.run("cat; echo done", timeout=5)
    assert (r.stdout, r.timed_out) == ("done\n", False)


def test_local_killed_by_signal_reports_128_plus_signal(local: LocalTransport) -> None:
    assert local.run("kill -9 $$").exit_code == 128 + 9


def test_local_timeout_kills_the_whole_process_group(local: LocalTransport, tmp_path: Path) -> None:
    pidfile = tmp_path / "bg.pid"
    start = time.monotonic()
    r = local.run(f"echo started; sleep 60 & echo $! > {pidfile}; wait", timeout=0.5)
    assert r.timed_out and r.exit_code == 124 and not r.ok
    assert r.stdout == "started\n"  # output before the timeout is kept
    assert 0.5 <= r.duration_s < 5 and time.monotonic() - start < 5
    assert _wait_gone(int(pidfile.read_text())), "the background sleep survived the timeout"


def test_starting_a_missing_program_is_a_transport_error() -> None:
    with pytest.raises(TransportError) as info:
        run_argv("n9", ["/nonexistent/prog"], "x", timeout=1)
    assert info.value.node == "n9" and "/nonexistent/prog" in str(info.value)


def test_concurrent_local_runs_do_not_mix_output(local: LocalTransport) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: local.run(f"echo {i}; echo e{i} >&2"), range(40)))
    assert [(r.stdout, r.stderr) for r in results] == [(f"{i}\n", f"e{i}\n") for i in range(40)]


# -- nsenter ------------------------------------------------------------------------------

needs_root_nsenter = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nsenter") or not shutil.which("unshare"),
    reason="entering namespaces needs root and util-linux nsenter/unshare",
)


@pytest.fixture
def namespaced_sleep():
    """A process (Popen) in fresh UTS + network namespaces, hostname ``nstest``; killed at teardown."""
    proc = subprocess.Popen(["unshare", "--uts", "--net", "sh", "-c", "hostname nstest && exec sleep 120"])
    deadline = time.monotonic() + 5
    while Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[0] != b"sleep":
        assert time.monotonic() < deadline and proc.poll() is None, "unshare did not start"
        time.sleep(0.01)
    yield proc
    proc.kill()
    proc.wait()


def test_nsenter_rejects_unknown_namespace_letters() -> None:
    with pytest.raises(ValueError, match="namespaces"):
        NsenterTransport("n", 1, namespaces="nx")


@needs_root_nsenter
def test_nsenter_runs_inside_the_namespaces(namespaced_sleep: subprocess.Popen) -> None:
    t = NsenterTransport("c1", namespaced_sleep.pid)
    r = t.run("hostname; ip -o link show | cut -d: -f2 | tr -d ' '; echo err >&2; exit 3")
    assert (r.node, r.exit_code, r.stdout, r.stderr) == ("c1", 3, "nstest\nlo\n", "err\n")
    assert subprocess.run(["hostname"], check=True, capture_output=True, text=True).stdout.strip() != "nstest"


@needs_root_nsenter
def test_nsenter_only_enters_the_requested_namespaces(namespaced_sleep: subprocess.Popen) -> None:
    own = subprocess.run(["hostname"], check=True, capture_output=True, text=True).stdout
    r = NsenterTransport("c1", namespaced_sleep.pid, namespaces="n").run("hostname; ip -o link show | wc -l")
    assert r.stdout.splitlines() == [own.strip(), "1"]


@needs_root_nsenter
def test_nsenter_env_is_the_commands_environment(namespaced_sleep: subprocess.Popen) -> None:
    r = NsenterTransport("c1", namespaced_sleep.pid, env={"PATH": os.environ["PATH"], "HPCV": "x y"}).run(
        'echo "$HPCV|${HOME-unset}"'
    )
    assert r.stdout == "x y|unset\n"


@needs_root_nsenter
def test_nsenter_timeout_kills_the_command(namespaced_sleep: subprocess.Popen, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    r = NsenterTransport("c1", namespaced_sleep.pid).run(f"sleep 60 & echo $! > {pidfile}; wait", timeout=0.3)
    assert (r.timed_out, r.exit_code) == (True, 124)
    assert _wait_gone(int(pidfile.read_text()))


@needs_root_nsenter
def test_nsenter_into_a_vanished_process_is_a_transport_error(namespaced_sleep: subprocess.Popen) -> None:
    pid = namespaced_sleep.pid
    t = NsenterTransport("c2", pid)
    namespaced_sleep.kill()
    namespaced_sleep.wait()  # reaped: /proc/<pid> is gone
    with pytest.raises(TransportError, match=rf"c2: namespace anchor process {pid} is gone"):
        t.run("true")


@needs_root_nsenter
def test_nsenter_failing_to_enter_is_a_transport_error(namespaced_sleep: subprocess.Popen) -> None:
    # the process shares our user namespace, and re-entering one's own user ns is EINVAL
    with pytest.raises(TransportError, match=r"c3: cannot enter .*nsenter: reassociate"):
        NsenterTransport("c3", namespaced_sleep.pid, namespaces="U").run("true")


# -- testinfra over a transport -----------------------------------------------------------


@pytest.fixture
def host(local: LocalTransport):
    return host_for(Node(name="here", role="compute", address="127.0.0.1", transport=local))


def test_testinfra_host_over_local_transport(host, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("content\n")
    assert host.backend.get_hostname() == "here"
    assert host.file("/etc/hostname").exists
    assert host.file(str(tmp_path / "f")).content_string == "content\n"
    assert not host.file(str(tmp_path / "missing")).exists
    assert host.run("echo hi").stdout == "hi\n"
    assert host.run("echo %s", "a b; c").stdout == "a b; c\n"  # args are shell-quoted
    assert host.check_output("printf 'x\\n'") == "x"
    assert host.run("exit 4").rc == 4
    with pytest.raises(AssertionError, match="Unexpected exit code 1"):
        host.check_output("false")


def test_testinfra_timeout_keyword(host) -> None:
    r = host.run("sleep 5", timeout=0.2)
    assert r.rc == 124


def test_node_host_property_uses_the_node_transport(local: LocalTransport) -> None:
    node = Node(name="n7", role="compute", address="127.0.0.1", transport=local)
    assert node.host.check_output("echo $((6*7))") == "42"
    assert node.host is node.host  # cached per node


def test_ping_many_in_waves_reports_every_target_once():
    """More targets than one wave (the loopback answers on all of 127/8): each target's own
    statistics come back, none lost between waves, the unreachable one named as such."""
    from pytest_hpcvalidate.probes import network

    if shutil.which("ping") is None:
        pytest.skip("needs ping (iputils-ping)")
    node = Node("h", "compute", "127.0.0.1", LocalTransport("h"))
    targets = [f"127.0.0.{i}" for i in range(1, 2 * network.PING_WAVE + 3)]
    stats = network.ping_many(node, [*targets, "no-such-host.invalid"], count=2, interval_s=0.01)
    assert list(stats) == [*targets, "no-such-host.invalid"]
    assert all(stats[t].sent == stats[t].received == 2 for t in targets), {t: (s.sent, s.received) for t, s in stats.items()}
    assert stats["no-such-host.invalid"].loss_pct == 100.0 and stats["no-such-host.invalid"].error


def test_forward_and_reverse_lookups_on_a_node(local: LocalTransport) -> None:
    """The name-resolution probes through a real transport: every name and address in one
    command; one that does not resolve is an empty list, not an error."""
    from pytest_hpcvalidate.probes import network
    node = Node("here", "compute", "127.0.0.1", local)
    here = subprocess.run(["getent", "hosts", "127.0.0.1"], capture_output=True, text=True).stdout.split()
    assert network.reverse_all(node, ["127.0.0.1", "192.0.2.1"]) == {"127.0.0.1": here[1:], "192.0.2.1": []}
    assert here[1:] and network.resolve_all(node, [here[1], "nothing.invalid"]) == {here[1]: ["127.0.0.1"],
                                                                                    "nothing.invalid": []}
