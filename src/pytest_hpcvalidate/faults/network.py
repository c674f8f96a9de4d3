"""Network faults on one node of a local cluster: link down, wrong MTU, wrong hostname,
a blocked port, a clock that is off. Each enters the node's namespaces through the cluster's own transport."""

from __future__ import annotations

import contextlib
import shlex
import shutil
import time
from pathlib import Path

from ..providers.local.naming import NODE_IFACE  # the node side of every local node's link
from . import edited, mounted_on_node, require_local
from ._wait import until


def _node(engine, name: str):
    require_local(engine)
    return engine.cluster.node(name)


@contextlib.contextmanager
def _applied(node, apply: str, revert: str):
    """``apply`` run on ``node`` while inside, ``revert`` on the way out (both must succeed)."""
    node.run(apply, timeout=15).check()
    try:
        yield
    finally:
        node.run(revert, timeout=15).check()


@contextlib.contextmanager
def link_down(engine, name: str):
    """The node's cluster interface is down: it drops off the network."""
    node = _node(engine, name)
    node.run(f"ip link set {NODE_IFACE} down", timeout=15).check()
    try:
        yield
    finally:
        node.run(f"ip link set {NODE_IFACE} up", timeout=15).check()
        # the connected route comes back with the link; wait until peers answer again
        node.run(f"ping -c 1 -W 2 {shlex.quote(engine.cluster.controller.address)} || "
                 f"ping -c 1 -W 2 {shlex.quote(engine.cluster.compute[0].address)}", timeout=20)


@contextlib.contextmanager
def mtu(engine, name: str, value: int):
    """The node's cluster interface has MTU ``value`` instead of the configured one."""
    node = _node(engine, name)
    before = node.run(f"cat /sys/class/net/{NODE_IFACE}/mtu", timeout=15).check().stdout.strip()
    with _applied(node, f"ip link set {NODE_IFACE} mtu {int(value)}", f"ip link set {NODE_IFACE} mtu {int(before)}"):
        yield


@contextlib.contextmanager
def hostname(engine, name: str, wrong: str):
    """The node calls itself ``wrong`` (its UTS namespace's hostname)."""
    with _applied(_node(engine, name), f"hostname {shlex.quote(wrong)}", f"hostname {shlex.quote(name)}"):
        yield


def _iptables(engine, name: str, rule: str):
    return _applied(_node(engine, name), f"iptables -I {rule}", f"iptables -D {rule}")


def port_blocked(engine, name: str, port: int):
    """Incoming TCP to ``port`` on the node is dropped (iptables in the node's namespace)."""
    return _iptables(engine, name, f"INPUT -p tcp --dport {int(port)} -j DROP")


def port_unreachable_from(engine, name: str, port: int):
    """The node's own TCP connections to ``port`` (on any host) are refused (iptables OUTPUT in
    its namespace): a host firewall on that node alone."""
    return _iptables(engine, name, f"OUTPUT -p tcp --dport {int(port)} -j REJECT --reject-with tcp-reset")


def only_ssh_in(engine, name: str):
    """New TCP connections into the node are refused but to SSH (port 22): a login node's
    firewall that lets users in and nothing else (its own connections out still work)."""
    return _iptables(engine, name, "INPUT -p tcp --syn ! --dport 22 -j REJECT --reject-with tcp-reset")


@contextlib.contextmanager
def rate_limited(engine, name: str, mbit: int):
    """Traffic leaving the node is shaped to ``mbit`` Mbit/s (tbf; this kernel has no netem)."""
    with _applied(_node(engine, name),
                  f"tc qdisc replace dev {NODE_IFACE} root tbf rate {int(mbit)}mbit burst 32kbit latency 50ms",
                  f"tc qdisc del dev {NODE_IFACE} root"):
        yield


def packet_loss(engine, name: str, probability: float):
    """Incoming ICMP echo requests to the node are dropped with ``probability``."""
    return _iptables(engine, name, f"INPUT -p icmp --icmp-type echo-request -m statistic --mode random "
                                   f"--probability {probability:g} -j DROP")


def wrong_hosts_entry(engine, name: str, address: str):
    """The cluster's hosts file (every node's /etc/hosts) maps ``name`` to ``address``."""
    require_local(engine)

    def edit(text: str) -> str:
        lines = [f"{address}\t{name}" if line.split()[1:2] == [name] else line for line in text.splitlines()]
        return "\n".join(lines) + "\n"

    return edited(engine.work_dir / "etc" / "hosts", edit)


def stale_hosts_entry(engine, name: str, stale: str):
    """The cluster's hosts file (every node's /etc/hosts) has a line naming ``stale`` for
    ``name``'s address before ``name``'s own: the address was reused, the old line left behind.
    ``name`` still resolves to its address; the address resolves back to ``stale``."""
    require_local(engine)
    address = engine.cluster.node(name).address

    def edit(text: str) -> str:
        lines = text.splitlines()
        at = next(i for i, line in enumerate(lines) if line.split()[1:2] == [name])
        return "\n".join(lines[:at] + [f"{address}\t{stale}"] + lines[at:]) + "\n"

    return edited(engine.work_dir / "etc" / "hosts", edit)


@contextlib.contextmanager
def sshd_stopped(engine, name: str):
    require_local(engine)
    engine.stop_daemon(name, "sshd")
    try:
        yield
    finally:
        engine.start_daemon(name, "sshd")


#: libfaketime (Debian's libfaketime, installed by setup.sh): a program run with it preloaded
#: reads the wall clock FAKETIME seconds off, the monotonic clock untouched
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


@contextlib.contextmanager
def clock_off(engine, names, seconds: float, programs=("date",)):
    """On each node of ``names``, ``programs`` (on the node's PATH) read a wall clock
    ``seconds`` off (ahead when positive). A node's clock cannot be set apart in a namespace:
    they share the host's kernel clock, so each program is bound over, in the node's mount
    namespace only, by a wrapper that runs the real one with libfaketime preloaded."""
    if not Path(LIBFAKETIME).exists():
        raise RuntimeError(f"clock faults need {LIBFAKETIME}: apt-get install libfaketime (setup.sh does)")
    names = [names] if isinstance(names, str) else list(names)
    with contextlib.ExitStack() as stack:
        for name in names:
            node = _node(engine, name)
            d = engine.node_paths(name).root / "fault-clock"
            d.mkdir(parents=True, exist_ok=True)
            stack.callback(shutil.rmtree, d, ignore_errors=True)
            for program in programs:
                real = shutil.which(program)
                if real is None:
                    raise RuntimeError(f"clock fault: no {program} on this machine's PATH")
                shutil.copy2(real, d / f"real-{program}")
                wrapper = d / program
                wrapper.write_text(f"#!/bin/sh\nLD_PRELOAD={LIBFAKETIME} FAKETIME={float(seconds):+.3f} "
                                   f"FAKETIME_DONT_FAKE_MONOTONIC=1 exec {d / f'real-{program}'} \"$@\"\n")
                wrapper.chmod(0o755)
                stack.enter_context(mounted_on_node(node, real, "--bind", str(wrapper)))
            if "date" in programs:
                def off_by(node=node) -> float:
                    return float(node.run("date +%s.%N", timeout=10).stdout.split()[-1]) - time.time()
                until(lambda: abs(off_by() - seconds) < 5, f"{name}'s date to run {seconds:+g} s off", 10)
        yield

