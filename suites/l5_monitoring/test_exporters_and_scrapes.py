"""Layer 5, monitoring: every node's exporter serves what dashboards and alerts need, and
Prometheus scrapes every node, recently, and holds that node's own data.

Every request is an HTTP GET sent from the Prometheus node (curl there): the path Prometheus
takes to each exporter. Nothing is changed, on any cluster. The seed project's checks matched
``"success"`` in a query's reply, which an empty result passes too; here a query must return
the node's own series (``node_uname_info``'s nodename is the node), scraped within
``monitoring.scrape_age_s_max``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pytest_hpcvalidate.probes import monitoring as probe
from pytest_hpcvalidate.probes import storage
from pytest_hpcvalidate.capabilities import not_applicable

from . import or_fail

pytestmark = pytest.mark.requires("monitoring")


@dataclass(frozen=True)
class View:
    """What Prometheus says about every node at once, read once for all the per-node checks
    (a constant number of requests, whatever the node count)."""

    targets: list[probe.ScrapeTarget]
    now: float                                  # Prometheus's clock
    uname: list[tuple[dict, float, float]]      # node_uname_info, every instance
    uname_at: list[tuple[dict, float, float]]   # timestamp(node_uname_info): when each was scraped


@pytest.fixture(scope="module")
def view(prometheus):
    """The :class:`View`, or the error instead when Prometheus cannot say (each check fails with it)."""
    try:
        return View(prometheus.targets(), prometheus.now(), prometheus.query("node_uname_info"),
                    prometheus.query("timestamp(node_uname_info)"))
    except probe.MonitoringError as exc:
        return exc


def _view(view) -> View:
    if isinstance(view, Exception):
        pytest.fail(f"Prometheus cannot say what it scrapes: {view}")
    return view


def _node_target(node, targets, settings, prometheus) -> probe.ScrapeTarget:
    """The target that scrapes ``node``'s exporter: the one that is up, else the first."""
    port = settings.node_exporter_port
    mine = probe.targets_of_node(targets, node.name, node.address, port, settings.job)
    if not mine:
        listed = ", ".join(sorted({f"{t.address} ({t.job})" for t in targets})[:12]) or "none"
        job = f" in job {settings.job!r}" if settings.job else ""
        pytest.fail(f"{node.name}: Prometheus ({prometheus.url}) has no scrape target for {node.name}:{port} or "
                    f"{node.address}:{port}{job}; its targets: {listed}. Add {node.name}:{port} to its scrape config")
    return next((t for t in mine if t.health == "up"), mine[0])


def test_prometheus_is_ready_and_answers_queries(prometheus):
    reply = prometheus.ready()
    assert reply.ok, (f"Prometheus at {prometheus.url} is not ready (asked from {prometheus.node.name}): "
                      f"{reply.describe()}: is it running and listening there?")
    rows = or_fail(f"Prometheus at {prometheus.url} does not answer a query", lambda: prometheus.query("up"))
    assert rows, f"Prometheus ({prometheus.url}) has no 'up' series at all: it scrapes nothing"


def test_node_exporter_serves_the_required_metrics(monitored_node, prometheus, settings, each_node):
    port = settings.node_exporter_port
    reply = each_node(lambda n: probe.http_get(prometheus.node, f"http://{n.address}:{port}/metrics"))
    assert reply.ok, (f"{monitored_node.name}: its node exporter does not answer: {reply.describe()} (asked from "
                      f"{prometheus.node.name}): is prometheus-node-exporter running there, on port {port}, "
                      f"and the port open?")
    samples = or_fail(f"{monitored_node.name}: {reply.url}", lambda: probe.parse_metrics(reply.body))
    problems = probe.exporter_problems(samples, settings.required_metrics, settings.required_collectors)
    assert not problems, f"{monitored_node.name}'s node exporter ({reply.url}): " + "; ".join(problems)


def test_prometheus_scrapes_the_node(monitored_node, prometheus, settings, view, metric):
    v = _view(view)
    target = _node_target(monitored_node, v.targets, settings, prometheus)
    assert target.health == "up", (f"{monitored_node.name}: Prometheus cannot scrape {target.address} (job "
                                   f"{target.job}): health {target.health}, last error: {target.last_error or 'none'}")
    assert target.last_scrape is not None, f"{monitored_node.name}: Prometheus has never scraped {target.address}"
    age = metric("monitoring_scrape_age_s", round(max(0.0, v.now - target.last_scrape), 3), "s",
                 settings.scrape_age_s_max, "<=", node=monitored_node.name)
    assert age.passed, f"{monitored_node.name}: Prometheus last scraped {target.address} {age.value:g} s ago: {age.message}"


def test_prometheus_holds_the_nodes_own_current_data(monitored_node, prometheus, settings, view):
    v = _view(view)
    target = _node_target(monitored_node, v.targets, settings, prometheus)
    selector = f'node_uname_info{{instance="{target.instance}"}}'
    info = [row for row in v.uname if row[0].get("instance") == target.instance]
    stamps = [value for labels, value, _ in v.uname_at if labels.get("instance") == target.instance]
    assert info and stamps, (f"{monitored_node.name}: Prometheus holds no {selector} (target {target.address} "
                             f"is {target.health}): nothing of this node's can be graphed or alerted on")
    names = sorted({labels.get("nodename", "?") for labels, _, _ in info})
    assert names == [monitored_node.name], (
        f"{monitored_node.name}: the series Prometheus keeps as instance {target.instance} come from "
        f"{', '.join(names)} (node_uname_info nodename), not from {monitored_node.name}: the target reaches "
        f"another host (name resolution on {prometheus.node.name}, or the scrape config's address)")
    age = v.now - max(stamps)
    assert age <= settings.scrape_age_s_max, (
        f"{monitored_node.name}: Prometheus's newest sample of {selector} is {age:.1f} s old (at most "
        f"{settings.scrape_age_s_max:g} s): its data for the node is stale")


def test_prometheus_keeps_its_data_long_enough_and_has_room(prometheus, settings, metric):
    """Prometheus's retention is at least ``retention_days_min`` (where set) and the filesystem
    of its data directory has ``tsdb_free_gib_min`` free (read on the Prometheus node; a full
    disk stops it storing samples: every graph and alert goes blind)."""
    flags = or_fail("Prometheus cannot say how it runs", prometheus.flags)
    if settings.prometheus_url and settings.retention_days_min is None:
        not_applicable("Prometheus is outside the cluster (prometheus_url): its disk cannot be read here; set "
                    "monitoring.retention_days_min to check its retention")
    if settings.retention_days_min is not None:
        kept = probe.retention_s(flags)
        days = "without a time limit" if kept is None else f"{kept / 86400:g} day{'' if kept == 86400 else 's'}"
        assert kept is None or kept >= settings.retention_days_min * 86400, (
            f"Prometheus ({prometheus.url}) keeps its data {days} (storage.tsdb.retention.time="
            f"{flags.get('storage.tsdb.retention.time')}), the config wants at least "
            f"{settings.retention_days_min:g} days")
    if settings.prometheus_url:
        return
    path = flags.get("storage.tsdb.path", "")
    space, r = storage.disk_space(prometheus.node, path)
    assert space is not None, f"{prometheus.node.name}: cannot read the free space of Prometheus's data {path}: {r.describe()}"
    m = metric("prometheus_tsdb_free_gib", round(space.avail_gib, 2), "GiB", settings.tsdb_free_gib_min, ">=",
               node=prometheus.node.name)
    assert m.passed, (f"{prometheus.node.name}: Prometheus's data directory {path} (on {space.mounted_on}) has "
                      f"{space.avail_gib:.2f} GiB free: {m.message}")
