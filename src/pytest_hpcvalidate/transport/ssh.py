"""SSH to a node with paramiko: one reused connection per node, strict host keys by default.

Latency matters (a suite runs thousands of commands): the TCP socket is created here with
``TCP_NODELAY`` and handed to paramiko, which otherwise stalls every small command on
Nagle + delayed ACK (~46 ms instead of ~2.5 ms on loopback).
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Union

import paramiko
from paramiko.common import cMSG_CHANNEL_REQUEST
from paramiko.message import Message

from ._subprocess import TIMEOUT_EXIT_CODE
from .base import CommandResult, Transport, TransportError

PathLike = Union[str, "os.PathLike[str]"]

DEFAULT_PORT = 22
DEFAULT_USER = "root"
#: reported when the server sent no exit status (the command died of a signal), as ``ssh`` does
NO_EXIT_STATUS_CODE = 255
#: OpenSSH's default ``MaxSessions``: more concurrent channels on one connection are refused
DEFAULT_MAX_SESSIONS = 10
#: a ProxyJump chain deeper than this is taken for a loop in the ssh config
MAX_JUMP_HOPS = 8
#: connections opened at once by :func:`connect_all` (each costs a handshake of CPU here)
DEFAULT_CONNECT_PARALLEL = 32
_READ_CHUNK = 1 << 16

# paramiko logs every failed handshake with a traceback at ERROR; each failure reaches the
# caller as a one-line TransportError instead, so that log is noise on an operator's terminal
logging.getLogger("paramiko.transport").setLevel(logging.CRITICAL)


def fingerprint(key: paramiko.PKey) -> str:
    """``ssh-ed25519 SHA256:…``, as OpenSSH prints host key fingerprints."""
    return f"{key.get_name()} {key.fingerprint}"


def parse_hostspec(spec: str) -> tuple[str | None, str, int | None]:
    """``[user@]host[:port]`` (``[v6addr]:port`` too) as in ProxyJump -> (user, host, port)."""
    spec = spec.strip().removeprefix("ssh://")
    user, _, hostport = spec.rpartition("@")
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port = rest.removeprefix(":") or None
    elif hostport.count(":") == 1:
        host, port = hostport.split(":")
    else:
        host, port = hostport, None
    if not host:
        raise ValueError(f"no host in ssh host spec {spec!r}")
    return user or None, host, int(port) if port else None


class _StrictPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse hosts missing from known_hosts (OpenSSH ``StrictHostKeyChecking yes``)."""

    def __init__(self, node: str, known_hosts: list[Path]):
        self.node = node
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        files = ", ".join(str(p) for p in self.known_hosts) or "no known_hosts file"
        raise TransportError(
            self.node,
            f"host key for {hostname} ({fingerprint(key)}) is not in {files}; add it "
            "(ssh-keyscan) or use host_key_policy='accept-new'",
        )


class _AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """Trust an unknown host on first use and append it to known_hosts (``accept-new``)."""

    def __init__(self, known_hosts: Path):
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.known_hosts, "a", encoding="ascii") as fh:  # one short O_APPEND write
            fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


class SSHTransport(Transport):
    """Runs commands on a node over one reused, lazily opened SSH connection.

    - ``port``/``user``/``key_file`` default to what ``ssh_config`` says for ``host``, then to
      22 / ``root`` / paramiko's default keys. ``ssh_config`` (an OpenSSH client config file)
      is honoured for HostName, User, Port, IdentityFile and ProxyJump.
    - Host keys are checked against ``known_hosts`` (default ``~/.ssh/known_hosts`` plus
      ``/etc/ssh/ssh_known_hosts``). ``host_key_policy="strict"`` refuses unknown hosts,
      ``"accept-new"`` records them in ``known_hosts``; a changed key is always refused.
    - ``command_timeout`` bounds a command run with ``timeout=None`` (no bound by default).
    - ``agent``: offer the keys of a running ssh-agent (``SSH_AUTH_SOCK``) too, as ``ssh`` does.
    - ``jump`` is a bastion: an :class:`SSHTransport` (shared, not closed by us) or a
      ``[user@]host[:port][,…]`` ProxyJump spec; the target is reached through a
      ``direct-tcpip`` channel of the jump connection.
    - Thread-safe: connecting is serialised, commands run concurrently on separate channels
      (at most ``max_sessions`` at once, to stay under the server's MaxSessions).
    - A connection found dead is reopened once per command; one lost during a command is a
      :class:`TransportError` (the command is not re-run).
    - A command that times out returns ``timed_out=True`` / exit 124 and sshd is asked to
      SIGKILL it; OpenSSH refuses that for root sessions, where the command runs on until
      it next writes to its closed channel.
    """

    def __init__(
        self,
        node: str,
        host: str,
        port: int | None = None,
        user: str | None = None,
        key_file: PathLike | None = None,
        known_hosts: PathLike | None = None,
        host_key_policy: str = "strict",
        connect_timeout: float = 10.0,
        keepalive: int = 15,
        jump: SSHTransport | str | None = None,
        ssh_config: PathLike | None = None,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        agent: bool = True,
        command_timeout: float | None = None,
        _hops: int = 0,
    ):
        if host_key_policy not in ("strict", "accept-new"):
            raise ValueError(f"host_key_policy must be 'strict' or 'accept-new', got {host_key_policy!r}")
        if _hops > MAX_JUMP_HOPS:
            raise ValueError(
                f"ProxyJump chain to {host} is longer than {MAX_JUMP_HOPS} hops (a loop in the ssh config?)"
            )
        self.node = node
        self.ssh_config = Path(ssh_config) if ssh_config else None
        cfg = paramiko.SSHConfig.from_path(str(self.ssh_config)).lookup(host) if self.ssh_config else {}

        self.host = cfg.get("hostname", host)
        self.port = int(port or cfg.get("port") or DEFAULT_PORT)
        self.user = user or cfg.get("user") or DEFAULT_USER
        cfg_keys = [os.path.expanduser(k) for k in cfg.get("identityfile", [])]
        self.key_files = [os.fspath(key_file)] if key_file else cfg_keys
        self.known_hosts = Path(known_hosts) if known_hosts else Path.home() / ".ssh" / "known_hosts"
        self._global_known_hosts = Path("/etc/ssh/ssh_known_hosts") if known_hosts is None else None
        self.host_key_policy = host_key_policy
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.agent = agent
        self.command_timeout = command_timeout

        proxyjump = cfg.get("proxyjump", "none") if jump is None else jump
        self._owns_jump = isinstance(proxyjump, str)
        self.jump: SSHTransport | None = (
            self._jump_chain(proxyjump, known_hosts, max_sessions, _hops) if isinstance(proxyjump, str) else proxyjump
        )

        self._lock = threading.Lock()
        self._sessions = threading.BoundedSemaphore(max_sessions)
        self._max_sessions = max_sessions
        self._client: paramiko.SSHClient | None = None

    # -- connection ---------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``host:port`` (``[v6]:port``), as used in messages."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def connection(self) -> paramiko.Transport | None:
        """The live paramiko transport, if connected (for introspection and tests)."""
        client = self._client
        return client.get_transport() if client is not None else None

    def _jump_chain(self, spec: str, known_hosts: PathLike | None, max_sessions: int, hops: int) -> SSHTransport | None:
        """Build the jump transports for a ProxyJump spec (``a,b`` reaches b through a).

        Bastions share this transport's known_hosts, policy and ssh config; one the config
        gives no IdentityFile is opened with this transport's keys.
        """
        if spec.strip().lower() == "none":
            return None
        previous: SSHTransport | None = None
        for part in spec.split(","):
            user, host, port = parse_hostspec(part)
            previous = SSHTransport(
                f"{self.node} (jump {part.strip()})",
                host,
                port=port,
                user=user,
                known_hosts=known_hosts,
                host_key_policy=self.host_key_policy,
                connect_timeout=self.connect_timeout,
                keepalive=self.keepalive,
                jump=previous,
                ssh_config=self.ssh_config,
                max_sessions=max_sessions,
                agent=self.agent,
                _hops=hops + 1,
            )
            if not previous.key_files:
                previous.key_files = self.key_files
        return previous

    def _open_socket(self) -> socket.socket | paramiko.Channel:
        """A TCP socket with TCP_NODELAY to the node, or a tunnel through the jump host."""
        if self.jump is not None:
            try:
                return self.jump._ensure_connected().open_channel(
                    "direct-tcpip", (self.host, self.port), ("127.0.0.1", 0), timeout=self.connect_timeout
                )
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise TransportError(
                    self.node, f"jump host {self.jump.address} cannot open a tunnel to {self.address}: {exc}"
                ) from exc
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except TimeoutError as exc:
            raise TransportError(
                self.node, f"cannot connect to {self.address}: timed out after {self.connect_timeout:g}s"
            ) from exc
        except OSError as exc:
            raise TransportError(self.node, f"cannot connect to {self.address}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _new_client(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        if self._global_known_hosts is not None and self._global_known_hosts.is_file():
            client.load_system_host_keys(str(self._global_known_hosts))
        if self.known_hosts.is_file():
            client.load_host_keys(str(self.known_hosts))
        if self.host_key_policy == "accept-new":
            client.set_missing_host_key_policy(_AcceptNewPolicy(self.known_hosts))
        else:
            files = [p for p in (self.known_hosts, self._global_known_hosts) if p is not None]
            client.set_missing_host_key_policy(_StrictPolicy(self.node, files))
        return client

    def _connect(self) -> paramiko.SSHClient:
        sock = self._open_socket()
        client = self._new_client()
        start = time.monotonic()
        try:
            client.connect(
                self.host,
                port=self.port,
                username=self.user,
                key_filename=self.key_files or None,  # type: ignore[arg-type]  # a list works
                look_for_keys=not self.key_files,
                allow_agent=self.agent,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
                channel_timeout=self.connect_timeout,
                sock=sock,
            )
        except BaseException as exc:
            client.close()
            sock.close()
            error = self._connect_error(exc, time.monotonic() - start)
            if error is exc:
                raise
            raise error from exc
        transport = client.get_transport()
        assert transport is not None
        if self.keepalive:
            transport.set_keepalive(self.keepalive)
        return client

    def _connect_error(self, exc: BaseException, elapsed: float = 0.0) -> BaseException:
        """The TransportError that explains a failed connect (other errors pass through)."""
        if isinstance(exc, TransportError):
            return exc
        if isinstance(exc, paramiko.BadHostKeyException):
            name = exc.hostname if self.port == DEFAULT_PORT else f"[{exc.hostname}]:{self.port}"
            return TransportError(
                self.node,
                f"HOST KEY MISMATCH for {name}: the server presented {fingerprint(exc.key)}, "
                f"known_hosts ({self.known_hosts}) expects {fingerprint(exc.expected_key)}; "
                f"either the host was reinstalled (then `ssh-keygen -R '{name}'`) or someone is "
                "intercepting the connection",
            )
        if isinstance(exc, paramiko.AuthenticationException):
            keys = ", ".join(self.key_files) or "default keys/agent"
            return TransportError(self.node, f"authentication as {self.user}@{self.address} failed ({keys}): {exc}")
        if isinstance(exc, paramiko.SSHException) and "No authentication methods available" in str(exc):
            return TransportError(self.node, f"authentication as {self.user}@{self.address} failed: no key to offer "
                                             "(no key_file, no ~/.ssh/id_* key, no ssh-agent)")
        if isinstance(exc, (paramiko.SSHException, EOFError, OSError)):
            why = exc or type(exc).__name__
            if elapsed >= self.connect_timeout * 0.9:  # paramiko's own message then names a symptom
                why = f"no complete SSH handshake within {self.connect_timeout:g}s (sshd hung or overloaded?): {why}"
            return TransportError(self.node, f"SSH handshake with {self.address} failed: {why}")
        return exc

    def _ensure_connected(self) -> paramiko.Transport:
        """The live connection, opening (or reopening a dead) one under the lock."""
        with self._lock:
            client = self._client
            transport = client.get_transport() if client is not None else None
            if transport is None or not transport.is_active():
                if client is not None:
                    client.close()
                self._client = client = self._connect()
                transport = client.get_transport()
            assert transport is not None
            return transport

    def connect(self) -> None:
        """Open the connection now (run() would open it on first use); raises TransportError."""
        self._ensure_connected()

    def _discard(self, dead: paramiko.Transport) -> None:
        """Forget ``dead`` unless another thread already replaced it."""
        with self._lock:
            if self._client is not None and self._client.get_transport() is dead:
                self._client.close()
                self._client = None

    def _open_session(self) -> paramiko.Channel:
        """A new session channel; a connection that died since last use is reopened once.

        A channel the server refuses (sshd at its MaxSessions: sessions this client closed a
        moment ago are freed on the server's side a little later, or another client shares the
        connection's limit) is asked for again, backing off, for up to ``connect_timeout``.
        """
        deadline = time.monotonic() + self.connect_timeout
        reconnected = False
        delay = 0.005
        while True:
            transport = self._ensure_connected()
            try:
                return transport.open_session(timeout=self.connect_timeout)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                # refused on a live connection (paramiko hands the ChannelException to one of
                # the threads waiting; the others see "Unable to open channel.")
                refused = transport.is_active() and (
                    isinstance(exc, paramiko.ChannelException) or str(exc) == "Unable to open channel.")
                if not refused:
                    if transport.is_active() or reconnected:
                        raise TransportError(self.node, f"cannot open a session on {self.address}: {exc}") from exc
                    self._discard(transport)  # the connection died: reopen it, once
                    reconnected = True
                    continue
                if time.monotonic() + delay < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.25)
                    continue
                raise TransportError(
                    self.node,
                    f"cannot open a session on {self.address}: the server refused new sessions for "
                    f"{self.connect_timeout:g}s ({exc}); sshd's MaxSessions is lower than this "
                    f"connection's max_sessions ({self._max_sessions}) or the sessions are held by others",
                ) from exc

    def close(self) -> None:
        """Close the connection (and a jump host built from a spec); run() reconnects."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
        if self.jump is not None and self._owns_jump:
            self.jump.close()

    # -- commands -----------------------------------------------------------------------

    def run(self, command: str, timeout: float | None = 60.0) -> CommandResult:
        timeout = self.command_timeout if timeout is None else timeout
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        with self._sessions:
            chan = self._open_session()
            try:
                try:
                    chan.exec_command(command)
                    _send_while_open(chan, chan._send_eof)  # no stdin: a command reading it sees EOF, not a hang
                    stdout, stderr, finished = _collect(chan, deadline)
                except (paramiko.SSHException, EOFError, OSError) as exc:
                    raise TransportError(
                        self.node, f"connection to {self.address} lost running `{command}`: {exc}"
                    ) from exc
                if finished:
                    code = chan.recv_exit_status()
                    if code < 0 and not chan.eof_received:  # closed under us, not by the command
                        raise TransportError(self.node, f"connection to {self.address} lost running `{command}`")
                    exit_code = NO_EXIT_STATUS_CODE if code < 0 else code
                else:
                    _send_signal(chan, "KILL")
                    exit_code = TIMEOUT_EXIT_CODE
            finally:
                chan.close()
        return CommandResult(
            node=self.node,
            command=command,
            exit_code=exit_code,
            stdout=stdout.decode("utf-8", errors="replace"),
            stderr=stderr.decode("utf-8", errors="replace"),
            duration_s=time.monotonic() - start,
            timed_out=not finished,
        )

    def __repr__(self) -> str:
        via = f" via {self.jump.address}" if self.jump is not None else ""
        return f"SSHTransport({self.node!r}, {self.user}@{self.address}{via})"


def connect_all(
    transports: Iterable[SSHTransport], parallel: int = DEFAULT_CONNECT_PARALLEL
) -> dict[str, TransportError]:
    """Open every transport's connection, at most ``parallel`` handshakes at once.

    Returns ``{node: error}`` for the nodes that could not be reached (connection refused,
    timeout, host key mismatch, authentication); the others are connected. Never raises for
    one bad node: the caller decides what an unreachable node means.
    """
    targets = list(transports)
    if not targets:
        return {}

    def one(t: SSHTransport) -> TransportError | None:
        try:
            t.connect()
        except TransportError as exc:
            return exc
        return None

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(targets)))) as pool:
        errors = list(pool.map(one, targets))
    return {t.node: e for t, e in zip(targets, errors) if e is not None}


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _collect(chan: paramiko.Channel, deadline: float | None) -> tuple[bytes, bytes, bool]:
    """Read stdout and stderr until EOF and the exit status; False if the deadline came first."""
    out, err = bytearray(), bytearray()
    poller = select.poll()
    poller.register(chan.fileno(), select.POLLIN)  # readable: data on either stream, or EOF
    while True:
        eof = chan.eof_received or chan.closed  # read before draining: data precedes EOF
        while chan.recv_ready():
            out += chan.recv(_READ_CHUNK)
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(_READ_CHUNK)
        if eof:
            break
        remaining = _remaining(deadline)
        if remaining == 0.0:
            return bytes(out), bytes(err), False
        poller.poll(None if remaining is None else max(1, int(remaining * 1000)))
    # the exit status comes right after EOF (or the channel closes without one: a signal)
    finished = chan.status_event.wait(_remaining(deadline))
    return bytes(out), bytes(err), finished


def _send_while_open(chan: paramiko.Channel, build: Callable[[], Message | None]) -> None:
    """Send the message ``build()`` makes on ``chan``, unless the channel is closed by then.

    paramiko answers the server's CLOSE from its transport thread. A message that a command's
    thread built before that answer but sent after it (``Channel.shutdown_write`` releases the
    channel's lock between the two; a loaded machine preempts it there) reaches sshd for a
    channel it has freed, and sshd drops the whole connection ("ieof packet referred to
    nonexistent channel"), losing every command running on it. Building and sending under the
    transport's send lock orders the two: the transport thread's CLOSE waits for that lock.
    (Private paramiko attributes; the lock order, send lock then channel lock, is safe: no
    paramiko path takes the send lock while holding a channel's.)
    """
    transport = chan.get_transport()
    start = time.monotonic()
    while True:
        transport.clear_to_send.wait(0.1)  # type: ignore[attr-defined]  # set unless re-keying
        if not transport.active:
            return  # the connection is gone: the caller's read finds out
        with transport.clear_to_send_lock:  # type: ignore[attr-defined]
            if transport.clear_to_send.is_set():  # type: ignore[attr-defined]
                with chan.lock:
                    m = None if chan.closed else build()
                if m is not None:
                    transport._send_message(m)  # type: ignore[attr-defined]
                return
        if time.monotonic() - start > transport.clear_to_send_timeout:  # type: ignore[attr-defined]
            raise paramiko.SSHException("key exchange did not finish")


def _send_signal(chan: paramiko.Channel, name: str) -> None:
    """Best effort: ask sshd to signal the command's process group (RFC 4254 6.9)."""

    def build() -> Message:
        m = Message()
        m.add_byte(cMSG_CHANNEL_REQUEST)
        m.add_int(chan.remote_chanid)
        m.add_string("signal")
        m.add_boolean(False)
        m.add_string(name)
        return m

    try:
        _send_while_open(chan, build)  # no public API for it
    except (paramiko.SSHException, EOFError, OSError):
        pass
