"""Network facts: ping statistics, iperf3 throughput, name resolution, addresses, MTU."""

from __future__ import annotations

import json
import math
import re
import shlex
import statistics
import time
from dataclasses import dataclass

from ..cluster import DEFAULT_FANOUT

_SENT = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_TIME = re.compile(r"time[=<]([\d.]+) ?ms")


@dataclass(frozen=True)
class PingStats:
    target: str
    sent: int
    received: int
    rtts_ms: tuple[float, ...]
    error: str = ""

    @property
    def loss_pct(self) -> float:
        return 100.0 if self.sent == 0 else 100.0 * (self.sent - self.received) / self.sent

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile of the round trips (q in 0..100)."""
        if not self.rtts_ms:
            return None
        ordered = sorted(self.rtts_ms)
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        return ordered[rank - 1]

    @property
    def p50_ms(self) -> float | None:
        return statistics.median(self.rtts_ms) if self.rtts_ms else None

    @property
    def p99_ms(self) -> float | None:
        return self.percentile(99)


def pooled_percentile(stats, q: float) -> float | None:
    """Nearest-rank percentile of the round trips of every :class:`PingStats` in ``stats``
    together (a node's to all its peers); None without any."""
    return PingStats("*", 0, 0, tuple(rtt for s in stats for rtt in s.rtts_ms)).percentile(q)


def parse_ping(target: str, output: str) -> PingStats:
    m = _SENT.search(output)
    rtts = tuple(float(t) for t in _TIME.findall(output))
    if not m:
        return PingStats(target, 0, 0, rtts, error=output.strip().splitlines()[-1] if output.strip() else "no output")
    sent, received = int(m.group(1)), int(m.group(2))
    return PingStats(target, sent, received, rtts, error=_send_failure(output) if sent == 0 else "")


#: ping's "sendmsg: No buffer space available": the kernel refused to queue the request
_NOBUFS = "No buffer space available"


def _send_failure(output: str) -> str:
    """Why no echo request left at all (ping then reports 0 transmitted, not a loss)."""
    said = [ln.strip() for ln in output.splitlines() if ln.startswith("ping:") or "sendmsg" in ln]
    if said and _NOBUFS not in said[-1]:
        return said[-1]
    # iputils backs off silently on ENOBUFS, so usually nothing is said at all
    return ("no echo request could be sent before the deadline (the sender's kernel refused to "
            "queue them: a full neighbour (ARP) table? see dmesg for 'neighbor table overflow', "
            "ip neigh, net.ipv4.neigh.default.gc_thresh3)")


def ping_command(target: str, count: int, interval_s: float = 0.01, size: int | None = None,
                 dont_fragment: bool = False, deadline_s: float | None = None) -> str:
    opts = [f"-c {count}", f"-i {interval_s}", "-n"]
    if size is not None:
        opts.append(f"-s {size}")
    if dont_fragment:
        opts.append("-M do")
    # the deadline leaves 5 s beyond the pings' own time: a reply that comes late because the
    # sender is busy (every node pinging every other at once) is late, not lost
    opts.append(f"-w {deadline_s or int(count * interval_s) + 5}")
    return f"ping {' '.join(opts)} {shlex.quote(target)}"


#: at most this many pings at once from one node (see :func:`ping_many`)
PING_WAVE = 8


def ping_many(node, targets: list[str], count: int = 20, interval_s: float = 0.01) -> dict[str, PingStats]:
    """Ping every target from ``node``, ``PING_WAVE`` at a time (one shell, background jobs);
    {target: stats}.

    In waves, not all at once: ping as root reads replies on a raw socket, and every raw ICMP
    socket of a node gets a copy of every ICMP packet the node receives. With a ping per target
    all at once that is N sockets each flooded with N streams; on 1+32 local nodes about one
    pair in fifty lost a reply to a full socket buffer. Waves bound it at any cluster size."""
    if not targets:
        return {}
    marker = "@@HPCV-PING@@"
    # every ping writes to its own file (background jobs writing to one pipe interleave their
    # lines, which once cost a target its marker line); printed one after another once all end
    jobs = "\n".join(
        f"{ping_command(t, count, interval_s)} > \"$d/{i}\" 2>&1 &" + ("\nwait" if (i + 1) % PING_WAVE == 0 else "")
        for i, t in enumerate(targets)
    )
    show = "\n".join(
        f"printf '%s %s\\n' {marker} {shlex.quote(t)}; cat \"$d/{i}\"" for i, t in enumerate(targets)
    )
    script = f'd=$(mktemp -d) || exit 1\ntrap \'rm -rf "$d"\' EXIT\n{jobs}\nwait\n{show}'
    waves = -(-len(targets) // PING_WAVE)
    result = node.run(script, timeout=waves * (count * interval_s + 6) + 30)
    chunks: dict[str, str] = {}
    current = None
    for line in result.stdout.splitlines():
        if line.startswith(marker + " "):
            current = line[len(marker) + 1:]
            chunks[current] = ""
        elif current is not None:
            chunks[current] += line + "\n"
    return {t: parse_ping(t, chunks.get(t, result.stderr or "no output")) for t in targets}


@dataclass(frozen=True)
class Iperf3Result:
    bits_per_second: float
    retransmits: int | None
    error: str = ""

    @property
    def gbps(self) -> float:
        return self.bits_per_second / 1e9


def parse_iperf3(text: str) -> Iperf3Result:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return Iperf3Result(0.0, None, error=f"iperf3 printed no JSON: {text.strip()[:200]}")
    if data.get("error"):
        return Iperf3Result(0.0, None, error=data["error"])
    end = data.get("end", {})
    recv = end.get("sum_received") or end.get("sum") or {}
    sent = end.get("sum_sent") or {}
    return Iperf3Result(float(recv.get("bits_per_second", 0.0)), sent.get("retransmits"))


def _lookups(node, keys: list[str], lookup: str) -> dict[str, list[str]]:
    """{key: the words ``lookup`` (a pipeline reading ``$k``) prints for it on ``node``}, all
    keys in one command ([] where it prints nothing)."""
    script = "; ".join(f"k={shlex.quote(k)}; echo \"@@ $k\"; {lookup}" for k in keys)
    out: dict[str, list[str]] = {k: [] for k in keys}
    current = None
    for line in node.run(script, timeout=30).stdout.splitlines():
        if line.startswith("@@ "):
            current = line[3:]
        elif current is not None:
            out[current] += line.split()
    return out


def resolve_all(node, names: list[str]) -> dict[str, list[str]]:
    """``getent ahostsv4`` for each name on ``node`` → {name: [addresses]} ([] when unresolved)."""
    return _lookups(node, names, "getent ahostsv4 \"$k\" | awk '{print $1}' | sort -u")


def reverse_all(node, addresses: list[str]) -> dict[str, list[str]]:
    """``getent hosts`` for each address on ``node`` (the hosts file, then DNS PTR records, as
    nsswitch says) → {address: [its canonical name, then its aliases]} ([] when unresolved)."""
    return _lookups(node, addresses, "getent hosts \"$k\" | awk 'NR == 1 {$1 = \"\"; print}'")


@dataclass(frozen=True)
class Interface:
    name: str
    mtu: int
    addresses: tuple[str, ...]
    up: bool


def parse_ip_addr_json(text: str) -> list[Interface]:
    out = []
    for item in json.loads(text or "[]"):
        addrs = tuple(a["local"] for a in item.get("addr_info", []) if a.get("family") == "inet")
        out.append(Interface(item["ifname"], int(item.get("mtu", 0)), addrs, "UP" in item.get("flags", [])))
    return out


def interfaces(node) -> list[Interface]:
    return parse_ip_addr_json(node.run("ip -j addr show", timeout=15).check().stdout)


def iperf3_between(server, client, port: int = 5201, seconds: float = 2.0) -> Iperf3Result:
    """TCP throughput ``client -> server``: a one-off iperf3 server on ``server`` (exits after one
    test), the client on ``client`` with JSON output."""
    start = server.run(f"iperf3 -s -1 -D -p {port} --bind {shlex.quote(server.address)}", timeout=15)
    if not start.ok:
        return Iperf3Result(0.0, None, error=f"iperf3 server did not start on {server.name}: {start.describe()}")
    cmd = f"iperf3 -c {shlex.quote(server.address)} -p {port} -t {seconds:g} -J --connect-timeout 3000"
    for _ in range(20):  # the daemonized server may need a moment to listen
        result = client.run(cmd, timeout=seconds + 20)
        parsed = parse_iperf3(result.stdout)
        if "unable to connect" not in parsed.error and "Connection refused" not in parsed.error:
            return parsed
        time.sleep(0.1)
    server.run(f"pkill -f 'iperf3 -s -1 -D -p {port} '", timeout=10)
    return parsed


def _tcp_open(host: str, port: int, timeout_s: float) -> str:
    """A shell command that opens a TCP connection to ``host:port`` (bash's /dev/tcp), its
    error on stdout."""
    return f"timeout {timeout_s:g} bash -c 'exec 3<>/dev/tcp/{host}/{port}' 2>&1"


def _tcp_error(said: str) -> str:
    """bash's last line about a failed /dev/tcp open, without its ``bash: line 1: /dev/tcp/…:`` prefix."""
    return re.sub(r"^.*/dev/tcp/\S+: ", "", (said.strip().splitlines() or [""])[-1])


def tcp_connect(node, host: str, port: int, timeout_s: float = 3.0) -> str:
    """'' when ``node`` can open a TCP connection to ``host:port``, else the error."""
    r = node.run(_tcp_open(host, port, timeout_s), timeout=timeout_s + 10)
    if r.ok:
        return ""
    return _tcp_error(r.stdout) if r.stdout.strip() else ("timed out" if r.exit_code == 124 else f"exit {r.exit_code}")


#: (python3 -c, on the listening node) ``LO HI``: a port in LO..HI nothing listens on, chosen
#: at random (``PORT <n>``), or ``NOPORT``
_FREE_PORT = """
import random, socket, sys
lo, hi = int(sys.argv[1]), int(sys.argv[2])
ports = random.sample(range(lo, hi + 1), min(64, hi - lo + 1))
for port in ports:
    s = socket.socket()
    try:
        s.bind(("", port))
    except OSError:
        continue
    finally:
        s.close()
    print("PORT", port)
    break
else:
    print("NOPORT")
"""

#: (python3 -c) ``PORT COUNT WAIT``: listens on PORT, prints ``FROM <address>`` for each
#: connection, until COUNT came or WAIT seconds passed
_LISTEN = """
import socket, sys, time
port, count, wait = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", port))
s.listen(1024)
print("LISTENING", port, flush=True)
end = time.time() + wait
seen = 0
while seen < count and time.time() < end:
    s.settimeout(max(0.01, end - time.time()))
    try:
        c, (addr, _) = s.accept()
    except socket.timeout:
        break
    print("FROM", addr, flush=True)
    c.close()
    seen += 1
"""


def ephemeral_ports(node) -> tuple[int, int]:
    """The port range the node's kernel gives sockets that bind no port of their own
    (``net.ipv4.ip_local_port_range``; Linux's default 32768-60999 where it cannot be read)."""
    r = node.run("cat /proc/sys/net/ipv4/ip_local_port_range", timeout=10)
    parts = r.stdout.split() if r.ok else []
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return 32768, 60999


def free_port(node, lo: int, hi: int) -> tuple[int | None, str]:
    """A TCP port in ``lo..hi`` nothing listens on at ``node`` (its Python), or (None, why)."""
    r = node.run(f"python3 -c {shlex.quote(_FREE_PORT)} {lo} {hi}", timeout=20)
    m = re.search(r"^PORT (\d+)$", r.stdout, re.M)
    if r.ok and m:
        return int(m.group(1)), ""
    return None, ("no free port in that range" if "NOPORT" in r.stdout else r.describe())


@dataclass(frozen=True)
class ConnectBack:
    """Who reached a listener: each client's error ('' when it connected); ``listener_error``
    when the listener did not run (its output, one ``FROM <address>`` line per connection it
    took, is the evidence in the report)."""

    errors: dict[str, str]
    listener_error: str = ""


def connect_back(cluster, server, clients, port: int, wait_s: float = 10.0) -> ConnectBack:
    """``server`` listens on ``port`` while every node of ``clients`` connects to it at once
    (retrying for ``wait_s`` - 2 s, so that the listener may start after them): the path a
    job's tasks take back to an ``srun`` (its I/O and PMI ports) or an ``mpirun``."""
    retry_s = max(1.0, wait_s - 2)
    connect = (f"end=$(( $(date +%s) + {math.ceil(retry_s)} )); while :; do "
               f"err=$({_tcp_open(server.address, port, 2)}) && exit 0; "
               f"[ $(date +%s) -ge $end ] && {{ echo \"${{err:-timed out}}\"; exit 1; }}; sleep 0.2; done")
    fanout = DEFAULT_FANOUT
    # the clients go in batches of ``fanout``: the listener waits for the last batch too
    listen_s = wait_s + 2.0 * (len(clients) // fanout)

    def one(n):
        if n is server:
            return n.run(f"python3 -c {shlex.quote(_LISTEN)} {port} {len(clients)} {listen_s:g}", timeout=listen_s + 20)
        return n.run(connect, timeout=retry_s + 20)

    outcomes = cluster.map(one, [server, *clients], fanout=fanout + 1)
    listened = outcomes[server.name]
    listener = listened.value
    if listened.error is not None or listener is None or "LISTENING" not in listener.stdout:
        why = str(listened.error) if listened.error is not None else listener.describe()
        return ConnectBack({}, listener_error=why)
    errors = {}
    for c in clients:
        o = outcomes[c.name]
        if o.error is not None:
            errors[c.name] = str(o.error)
        else:
            errors[c.name] = "" if o.value.ok else (_tcp_error(o.value.stdout) or "failed")
    return ConnectBack(errors)
