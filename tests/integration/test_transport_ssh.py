"""SSHTransport against a real, throwaway OpenSSH server on 127.0.0.1."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko
import pytest
from paramiko.common import MSG_CHANNEL_EOF
from sshd_server import SSHD, ThrowawaySshd, descendants, free_port, is_running, keygen, session_processes

from pytest_hpcvalidate.cluster import Node
from pytest_hpcvalidate.transport import TransportError
from pytest_hpcvalidate.transport.ssh import SSHTransport, connect_all, parse_hostspec
from pytest_hpcvalidate.transport.testinfra_backend import host_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not SSHD.exists(), reason=f"{SSHD} is missing (apt-get install openssh-server)"),
]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    server = ThrowawaySshd(tmp_path_factory.mktemp("sshd"))
    server.start()
    yield server
    server.stop()
    assert server.proc is None


@pytest.fixture
def known_hosts(tmp_path: Path, sshd: ThrowawaySshd) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text(sshd.known_hosts_line)
    return path


@pytest.fixture
def make(sshd: ThrowawaySshd, known_hosts: Path):
    """Build SSHTransports to the throwaway sshd; all are closed at teardown."""
    made: list[SSHTransport] = []

    def factory(**kw) -> SSHTransport:
        kw = {"port": sshd.port, "key_file": sshd.client_key, "known_hosts": known_hosts, **kw}
        t = SSHTransport(kw.pop("node", "n1"), kw.pop("host", "127.0.0.1"), **kw)
        made.append(t)
        return t

    yield factory
    for t in made:
        t.close()


def openssh_fingerprint(pubkey_line: str) -> str:
    """SHA256 fingerprint computed independently of paramiko (as ``ssh-keygen -lf`` prints it)."""
    blob = base64.b64decode(pubkey_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def test_stdout_stderr_exit_codes(make) -> None:
    t = make()
    r = t.run("echo out; echo err >&2; exit 5")
    assert (r.node, r.exit_code, r.stdout, r.stderr, r.timed_out) == ("n1", 5, "out\n", "err\n", False)
    assert t.run("true").ok
    assert t.run("false").exit_code == 1
    assert t.run("printf '%s' \"$USER:$(id -u)\"").stdout == "root:0"
    assert t.run(r"printf 'caf\351'").stdout == "caf\ufffd"
    big = t.run("head -c 300000 /dev/zero | tr '\\0' x")  # more than one channel window
    assert big.stdout == "x" * 300000


def test_stdin_is_closed_so_readers_do_not_hang(make) -> None:
    r = make().run("cat; echo done", timeout=10)
    assert (r.stdout, r.timed_out) == ("done\n", False)


def test_command_killed_by_signal_has_no_exit_status(make) -> None:
    assert make().run("kill -9 $$").exit_code == 255


def test_one_connection_is_reused(make) -> None:
    t = make()
    assert t.connection is None  # lazy: nothing opened yet
    seen = set()
    for i in range(20):
        assert t.run(f"echo {i}").stdout == f"{i}\n"
        seen.add(id(t.connection))
    assert len(seen) == 1 and t.connection is not None and t.connection.is_active()


def test_sockets_have_tcp_nodelay(make) -> None:
    t = make()
    t.run("true")
    sock = t.connection.sock
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_concurrent_runs_from_8_threads_share_one_connection(make) -> None:
    t = make()
    connects = []
    real_connect = t._connect
    t._connect = lambda: connects.append(1) or real_connect()  # type: ignore[method-assign]
    barrier = threading.Barrier(8)

    def work(i: int) -> list[tuple[str, str, int]]:
        barrier.wait()  # all threads hit the lazy connect at once
        return [
            (r.stdout, r.stderr, id(t.connection))
            for r in (t.run(f"echo {i}-{j}; echo e{i}-{j} >&2") for j in range(5))
        ]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(8)))
    assert len(connects) == 1
    assert len({c for rows in results for *_, c in rows}) == 1
    assert [[row[:2] for row in rows] for rows in results] == [
        [(f"{i}-{j}\n", f"e{i}-{j}\n") for j in range(5)] for i in range(8)
    ]


def test_more_threads_than_max_sessions_queue_instead_of_failing(make) -> None:
    t = make(max_sessions=3)
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda i: t.run(f"sleep 0.2; echo {i}"), range(12)))
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(12)]


@pytest.fixture(scope="module")
def sshd_two_sessions(tmp_path_factory: pytest.TempPathFactory):
    """A throwaway sshd allowing two sessions per connection (MaxSessions 2)."""
    with ThrowawaySshd(tmp_path_factory.mktemp("sshd2"), extra_config=["MaxSessions 2"]) as server:
        yield server


def test_sessions_the_server_refuses_are_retried_then_named(sshd_two_sessions: ThrowawaySshd, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(sshd_two_sessions.known_hosts_line)

    def make2(**kw) -> SSHTransport:
        return SSHTransport("m1", "127.0.0.1", port=sshd_two_sessions.port, key_file=sshd_two_sessions.client_key,
                            known_hosts=known, **kw)

    t = make2(max_sessions=6)
    try:  # six at once against MaxSessions 2: the refused ones wait for a free session
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda i: t.run(f"sleep 0.3; echo {i}"), range(6)))
        assert [r.stdout for r in results] == [f"{i}\n" for i in range(6)]
    finally:
        t.close()
    t = make2(max_sessions=3, connect_timeout=0.5)
    try:  # two sessions held for longer than connect_timeout: the third is refused, said so
        with ThreadPoolExecutor(2) as pool:
            held = [pool.submit(t.run, "sleep 3") for _ in range(2)]
            deadline = time.monotonic() + 10
            while len(session_processes(sshd_two_sessions.port)) < 2:  # both sessions started
                assert time.monotonic() < deadline, "the two held sessions did not start within 10s"
                time.sleep(0.02)
            with pytest.raises(TransportError, match=r"m1: cannot open a session on 127.0.0.1:[0-9]+: the server "
                                                     r"refused new sessions for 0.5s .*MaxSessions.*max_sessions \(3\)"):
                t.run("true")
            assert [f.result().ok for f in held] == [True, True]
    finally:
        t.close()


def test_a_thread_preempted_while_sending_eof_does_not_lose_the_connection(make, monkeypatch) -> None:
    """The server closes a finished command's channel; paramiko's transport thread answers with
    CLOSE at once. A command thread that built its EOF but is preempted before sending it
    (``Channel.shutdown_write``) would send it after that CLOSE, and sshd drops the whole
    connection. Here every such send from a command thread is delayed by 0.3 s."""
    real = paramiko.Transport._send_user_message

    def slow_eof(transport, message):
        if message.asbytes()[:1] == bytes([MSG_CHANNEL_EOF]) and threading.current_thread() is not transport:
            time.sleep(0.3)  # long enough for `true` to finish and its CLOSE to be answered
        return real(transport, message)

    monkeypatch.setattr(paramiko.Transport, "_send_user_message", slow_eof)
    t = make()
    results = [t.run("true") for _ in range(3)]
    connection = t.connection
    results += [t.run("true") for _ in range(2)]
    assert [r.ok for r in results] == [True] * 5 and t.connection is connection


def test_timeout_returns_124_and_keeps_partial_output(make) -> None:
    t = make()
    start = time.monotonic()
    r = t.run("echo begun; sleep 30; echo never", timeout=1.0)
    elapsed = time.monotonic() - start
    assert (r.timed_out, r.exit_code, r.ok) == (True, 124, False)
    assert r.stdout == "begun\n"
    assert 1.0 <= elapsed < 3.0
    assert t.run("echo still usable").stdout == "still usable\n"  # the connection survives


def test_reconnects_once_when_the_connection_died(make) -> None:
    t = make()
    t.run("true")
    first = t.connection
    first.sock.close()  # kill the TCP connection under paramiko's feet
    deadline = time.monotonic() + 5
    while first.is_active() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert t.run("echo back").stdout == "back\n"
    assert t.connection is not first and t.connection.is_active()


def test_reconnects_when_the_connection_dies_between_check_and_use(make) -> None:
    t = make()
    t.run("true")
    first = t.connection
    real_open_session = first.open_session

    def die_then_open(*args, **kwargs):
        first.close()  # the server went away just as the channel is opened
        return real_open_session(*args, **kwargs)

    first.open_session = die_then_open  # type: ignore[method-assign]
    assert t.run("echo retried").stdout == "retried\n"
    assert t.connection is not first


def test_connection_lost_during_a_command_is_a_transport_error(make) -> None:
    t = make(node="c3")
    t.run("true")
    threading.Timer(0.5, t.connection.sock.close).start()
    with pytest.raises(TransportError, match=r"c3: connection to 127\.0\.0\.1:\d+ lost running `sleep 5`"):
        t.run("sleep 5", timeout=10)
    assert t.run("echo recovered").stdout == "recovered\n"


def test_close_then_run_reconnects(make) -> None:
    t = make()
    t.run("true")
    first = t.connection
    t.close()
    assert t.connection is None
    assert t.run("echo again").stdout == "again\n"
    assert t.connection is not first


def test_strict_policy_rejects_an_unknown_host(make, tmp_path: Path, sshd: ThrowawaySshd) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    t = make(node="c9", known_hosts=empty)
    with pytest.raises(TransportError) as info:
        t.run("true")
    msg = str(info.value)
    assert info.value.node == "c9"
    assert f"[127.0.0.1]:{sshd.port}" in msg and "not in" in msg
    assert openssh_fingerprint(sshd.host_pubkey) in msg
    assert empty.read_text() == ""  # strict never writes


def test_strict_policy_without_a_known_hosts_file(make, tmp_path: Path) -> None:
    with pytest.raises(TransportError, match="not in"):
        make(known_hosts=tmp_path / "does-not-exist").run("true")
    assert not (tmp_path / "does-not-exist").exists()


def test_accept_new_writes_known_hosts_then_verifies(make, tmp_path: Path, sshd: ThrowawaySshd) -> None:
    path = tmp_path / "sub" / "known_hosts"
    t = make(known_hosts=path, host_key_policy="accept-new")
    assert t.run("echo trusted").stdout == "trusted\n"
    assert path.read_text() == sshd.known_hosts_line
    t.close()
    # a second transport finds the entry (strict now passes) and appends nothing
    assert make(known_hosts=path).run("true").ok
    assert make(known_hosts=path, host_key_policy="accept-new").run("true").ok
    assert path.read_text() == sshd.known_hosts_line


@pytest.mark.parametrize("policy", ["strict", "accept-new"])
def test_changed_host_key_is_refused_with_both_fingerprints(
    make, tmp_path: Path, sshd: ThrowawaySshd, policy: str
) -> None:
    wrong_pub = " ".join(keygen(tmp_path / "other_host_key").split()[:2])
    path = tmp_path / "known_hosts_wrong"
    path.write_text(f"[127.0.0.1]:{sshd.port} {wrong_pub}\n")
    with pytest.raises(TransportError) as info:
        make(node="c4", known_hosts=path, host_key_policy=policy).run("true")
    msg = str(info.value)
    assert msg.startswith("c4: HOST KEY MISMATCH")
    assert openssh_fingerprint(sshd.host_pubkey) in msg  # what the server presented
    assert openssh_fingerprint(wrong_pub) in msg  # what known_hosts expects
    assert path.read_text() == f"[127.0.0.1]:{sshd.port} {wrong_pub}\n"  # never overwritten


def test_connection_refused_names_host_and_port(make) -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(TransportError) as info:
        make(node="c5", port=port, connect_timeout=3).run("true")
    assert info.value.node == "c5"
    assert f"127.0.0.1:{port}" in str(info.value) and "refused" in str(info.value).lower()


def test_wrong_client_key_is_an_authentication_error(make, tmp_path: Path, sshd: ThrowawaySshd) -> None:
    keygen(tmp_path / "stranger")
    with pytest.raises(TransportError, match=rf"authentication as root@127.0.0.1:{sshd.port} failed"):
        make(key_file=tmp_path / "stranger").run("true")


def test_jump_host_transport(make, sshd: ThrowawaySshd) -> None:
    bastion = make(node="bastion")
    t = make(node="c6", jump=bastion)
    assert t.run("echo via").stdout == "via\n"
    assert bastion.connection is not None  # the tunnel rides the bastion's connection
    assert t.connection.sock.__class__.__name__ == "Channel"


def test_ssh_config_hostname_port_user_identity_and_proxyjump(make, tmp_path: Path, sshd: ThrowawaySshd) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host bastion\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User root\n  IdentityFile {sshd.client_key}\n"
        f"Host node*\n  HostName 127.0.0.1\n  Port {sshd.port}\n  IdentityFile {sshd.client_key}\n"
        "  ProxyJump bastion\n"
    )
    t = SSHTransport("c7", "node7", ssh_config=config, known_hosts=tmp_path / "kh", host_key_policy="accept-new")
    try:
        assert (t.host, t.port, t.user, t.key_files) == ("127.0.0.1", sshd.port, "root", [str(sshd.client_key)])
        assert t.jump is not None and t.jump.address == f"127.0.0.1:{sshd.port}"
        assert t.run("echo configured").stdout == "configured\n"
        assert t.jump.connection is not None
    finally:
        t.close()
    assert t.jump.connection is None  # a jump built from the config is ours to close


def test_proxyjump_loop_in_config_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n")
    with pytest.raises(ValueError, match="loop"):
        SSHTransport("c8", "a", ssh_config=config)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("host", (None, "host", None)),
        ("u@host:2222", ("u", "host", 2222)),
        ("[::1]:22", (None, "::1", 22)),
        ("u@[fe80::1]", ("u", "fe80::1", None)),
        ("ssh://u@h:1", ("u", "h", 1)),
    ],
)
def test_parse_hostspec(spec: str, expected: tuple) -> None:
    assert parse_hostspec(spec) == expected


def test_testinfra_host_over_ssh(make) -> None:
    node = Node(name="c1", role="compute", address="127.0.0.1", transport=make(node="c1"))
    host = host_for(node)
    assert host.backend.get_hostname() == "c1"
    assert host.file("/etc/hostname").exists
    assert not host.file("/nonexistent/hpcv").exists
    assert host.run("echo hi").stdout == "hi\n"
    assert host.check_output("echo %s", "two words") == "two words"
    assert host.run("exit 3").rc == 3
    assert host.exists("sh")


def test_nothing_left_running_after_stop(tmp_path: Path) -> None:
    server = ThrowawaySshd(tmp_path / "own")
    server.start()
    kh = tmp_path / "kh"
    kh.write_text(server.known_hosts_line)
    t = SSHTransport("c1", "127.0.0.1", port=server.port, key_file=server.client_key, known_hosts=kh)
    # sshd refuses "signal" requests in root sessions, so a timed-out command lingers remotely
    assert t.run("sleep 60", timeout=0.3).timed_out
    listener = server.proc.pid
    spawned = descendants(listener)
    assert len(spawned) >= 2  # the connection's sshd process(es) and the sleep
    t.close()
    server.stop()
    assert [pid for pid in [listener, *spawned] if is_running(pid)] == []


@contextlib.contextmanager
def silent_listener(count: int):
    """``count`` TCP ports that accept connections and never say a word (a hung sshd)."""
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        socks.append(s)
    try:
        yield [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def test_connect_all_is_parallel_bounded_and_reports_each_bad_node(make) -> None:
    with silent_listener(4) as ports:
        hung = [make(node=f"h{i}", port=port, connect_timeout=1.0) for i, port in enumerate(ports)]
        good = make(node="good")
        refused = make(node="refused", port=free_port())
        start = time.monotonic()
        errors = connect_all([*hung, good, refused], parallel=6)
        parallel_s = time.monotonic() - start
        assert good.connection is not None and good.connection.is_active()
        assert sorted(errors) == ["h0", "h1", "h2", "h3", "refused"]
        assert all(e.node == name for name, e in errors.items())
        assert "no complete SSH handshake within 1s" in errors["h0"].message and "refused" in errors["refused"].message.lower()
        assert parallel_s < 2.5  # four 1 s banner timeouts side by side, not one after another
        start = time.monotonic()
        assert sorted(connect_all(hung[:3], parallel=1)) == ["h0", "h1", "h2"]
        assert time.monotonic() - start >= 2.9  # parallel=1 is a bound: one at a time


@pytest.fixture
def agent(tmp_path: Path, sshd: ThrowawaySshd, monkeypatch: pytest.MonkeyPatch):
    """A running ssh-agent holding the throwaway sshd's client key (SSH_AUTH_SOCK set)."""
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        # the socket file exists from bind(), before the agent listens: wait until ssh-add can
        # talk to it (`ssh-add -l`: 1 = no keys yet, 2 = no agent)
        deadline = time.monotonic() + 10
        while subprocess.run(["ssh-add", "-l"], capture_output=True).returncode == 2:
            assert time.monotonic() < deadline, "ssh-agent did not listen within 10s"
            time.sleep(0.05)
        subprocess.run(["ssh-add", "-q", str(sshd.client_key)], check=True, capture_output=True)
        yield sock
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def test_ssh_agent_keys_are_offered_unless_disabled(make, agent, sshd, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/id_* keys to fall back on
    r = make(node="a1", key_file=None).run("echo agent")
    assert (r.exit_code, r.stdout) == (0, "agent\n"), f"{r}; sshd log: {sshd.log.read_text()[-2000:]}"
    with pytest.raises(TransportError, match="authentication as root@127.0.0.1:[0-9]+ failed: no key to offer"):
        make(node="a2", key_file=None, agent=False).run("true")


def test_command_timeout_bounds_a_command_run_without_one(make) -> None:
    r = make(command_timeout=0.5).run("sleep 20", timeout=None)
    assert (r.timed_out, r.exit_code) == (True, 124) and r.duration_s < 5
