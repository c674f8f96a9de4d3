"""Layer 1: every node reaches every other node, fast and without loss; names and addresses
agree with the config on every node, both ways; the MTU is what the config says; SSH works."""

from __future__ import annotations

import math

import pytest

from pytest_hpcvalidate.probes import clock, network


#: round trips a node's p99 is taken over, at least (over all its peers): with fewer, the
#: nearest-rank p99 is the slowest one, and one late reply on a busy host fails the layer
P99_SAMPLES = 100
#: pings per peer, at least (the loss and the per-peer median need some)
PINGS_PER_PEER_MIN = 20


def test_node_reaches_every_other_node(node, cluster, thresholds, metric, each_node):
    """All pairs: this node pings every other node's configured address (every node at once,
    as the cluster's traffic would be). The median is the slowest peer's; the p99 is over the
    node's round trips to all its peers (at least :data:`P99_SAMPLES` of them)."""
    others = [n for n in cluster.nodes if n is not node]
    count = max(PINGS_PER_PEER_MIN, math.ceil(P99_SAMPLES / max(1, len(others))))
    stats = each_node(lambda n: network.ping_many(n, [o.address for o in cluster.nodes if o is not n], count=count))
    by_addr = {n.address: n.name for n in others}
    lost = [
        f"{by_addr[s.target]} ({s.target}): {s.loss_pct:.0f}% loss{' - ' + s.error if s.error else ''}"
        for s in stats.values()
        if s.loss_pct > thresholds.ping_loss_max_pct
    ]
    assert not lost, f"{node.name} cannot reliably reach: " + "; ".join(lost)
    p50 = max(s.p50_ms for s in stats.values())
    p99 = network.pooled_percentile(stats.values(), 99)
    slow50 = metric("ping_rtt_p50_ms", p50, "ms", thresholds.latency_p50_ms_max, "<=", node=node.name)
    slow99 = metric("ping_rtt_p99_ms", p99, "ms", thresholds.latency_p99_ms_max, "<=", node=node.name)
    assert slow50.passed and slow99.passed, (
        f"from {node.name}: {slow50.message}; {slow99.message} "
        f"(over {sum(len(s.rtts_ms) for s in stats.values())} round trips to {len(others)} peers)")


def test_hostname_and_address_match_config(node, each_node):
    hostname, ifaces = each_node(lambda n: (n.run("hostname", timeout=15).check().stdout.strip(), network.interfaces(n)))
    assert hostname == node.name, f"{node.name}: hostname is {hostname!r}, the config says {node.name!r}"
    addrs = {a for i in ifaces for a in i.addresses}
    assert node.address in addrs, f"{node.name}: configured address {node.address} not on any interface (has {sorted(addrs)})"


def test_every_node_name_resolves_to_its_address(node, cluster, each_node):
    resolved = each_node(lambda n: network.resolve_all(n, [o.name for o in cluster.nodes]))
    wrong = [
        f"{n.name} -> {resolved[n.name] or 'nothing'} (expected {n.address})"
        for n in cluster.nodes
        if resolved[n.name] != [n.address]
    ]
    assert not wrong, f"name resolution on {node.name} is wrong: " + "; ".join(wrong)


def test_every_node_address_resolves_back_to_its_name(node, cluster, each_node):
    """Each node's address, looked up on every node (``getent hosts``: the hosts file, then
    DNS PTR records), names that node first (its short name or name.domain). A stale
    hosts-file line or PTR record for a reused address leaves the forward lookup right and
    names another host on the way back: GlusterFS peers, host-based SSH, Kerberos and every
    log line that names a peer by its address then point at the wrong machine."""
    names = each_node(lambda n: network.reverse_all(n, [o.address for o in cluster.nodes]))
    wrong = [f"{n.address} -> {(names[n.address] or ['nothing'])[0]} (expected {n.name})"
             for n in cluster.nodes if not names[n.address] or names[n.address][0].split(".", 1)[0] != n.name]
    assert not wrong, (
        f"reverse name resolution on {node.name} is wrong: " + "; ".join(wrong)
        + ". Fix the hosts file or the DNS PTR records: the node's own line must be the first for its address")


def _mtu_probe(cluster, mtu):
    """(interfaces, peer, ping result, stats): full frames with don't-fragment to a peer."""
    def probe(n):
        peer = cluster.controller if n is not cluster.controller else cluster.compute[0]
        cmd = network.ping_command(peer.address, count=3, interval_s=0.05, size=mtu - 28, dont_fragment=True)
        result = n.run(cmd, timeout=15)
        return network.interfaces(n), peer, result, network.parse_ping(peer.address, result.stdout + result.stderr)
    return probe


def test_mtu_matches_config_and_full_frames_pass(node, cluster, hpc_config, each_node):
    mtu = hpc_config.network.mtu
    ifaces, peer, result, stats = each_node(_mtu_probe(cluster, mtu))
    iface = next((i for i in ifaces if node.address in i.addresses), None)
    assert iface is not None, f"{node.name}: no interface carries {node.address}"
    assert iface.mtu == mtu, f"{node.name}: {iface.name} has MTU {iface.mtu}, the config says {mtu}"
    assert stats.received == stats.sent > 0, (
        f"{node.name} -> {peer.name}: {mtu}-byte frames with don't-fragment do not pass "
        f"({stats.received}/{stats.sent} replies): {result.stderr.strip() or stats.error}"
    )


def test_ssh_reaches_node_with_cluster_key(node, each_node):
    assert node.ssh is not None, f"{node.name}: the provider gives no SSH access to this node"
    result = each_node(lambda n: n.run_ssh("hostname", timeout=30) if n.ssh is not None else None)
    assert result.ok, f"SSH to {node.name} ({node.address}) failed: {result.describe()}"
    assert result.stdout.strip() == node.name, f"SSH to {node.address} reached {result.stdout.strip()!r}, not {node.name}"


@pytest.fixture(scope="module")
def controller_clock(cluster):
    reading = clock.read(cluster.controller, samples=5)
    assert reading.offset_s is not None, f"cannot read the clock of {cluster.controller.name}: {reading.error}"
    return reading


def test_clock_agrees_with_the_controller(peer_node, controller_clock, thresholds, metric, each_node):
    """The node's (compute or login) wall clock is the controller's, within ``thresholds.clock_skew_s_max`` beyond
    what the reading itself can tell (both read against the same local clock)."""
    reading = each_node(clock.read)
    assert reading.offset_s is not None, f"cannot read the clock of {peer_node.name}: {reading.error}"
    skew, bound = reading.skew_to(controller_clock)
    beyond = max(0.0, abs(skew) - bound)
    m = metric("clock_skew_ms", round(beyond * 1000, 3), "ms", thresholds.clock_skew_s_max * 1000, "<=",
               node=peer_node.name)
    assert m.passed, (
        f"{peer_node.name}: its clock is {skew:+.3f} s from {controller_clock.node}'s (±{bound:.3f} s): "
        f"{m.message}; is NTP (chrony) running and in sync on both?")


def test_bandwidth_between_node_pair(node_pair, thresholds, metric):
    """iperf3 TCP from one node to the next (a ring over all nodes, sampled on large clusters)."""
    sender, receiver = node_pair
    port = 5201 + sum(map(ord, sender.name + receiver.name)) % 500  # pairs may run side by side (xdist)
    result = network.iperf3_between(receiver, sender, port=port, seconds=thresholds.bandwidth_seconds)
    assert not result.error, f"iperf3 {sender.name} -> {receiver.name} ({receiver.address}) failed: {result.error}"
    m = metric("tcp_bandwidth_gbps", round(result.gbps, 3), "Gbit/s", thresholds.bandwidth_gbps_min, ">=",
               node=f"{sender.name}->{receiver.name}")
    assert m.passed, f"{sender.name} -> {receiver.name}: {m.message}"
