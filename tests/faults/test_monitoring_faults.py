"""Every monitoring check goes red when the thing it checks is broken — and names the node.

One real local cluster (1 controller + 2 compute nodes) with Prometheus and a node exporter on
every node serves the module. Each test breaks one thing with
``pytest_hpcvalidate.faults.monitoring``, runs the shipped ``l5_monitoring`` checks through the
plugin (``--hpc-reuse``) and asserts which tests fail and what they say. The first test proves
the healthy cluster passes every one, so a red result below is the fault's doing.
"""

from __future__ import annotations

import re
from pathlib import Path

import clusterkit
import pytest
import yaml

from pytest_hpcvalidate.faults import monitoring as monfaults

SUITES = clusterkit.SUITES
CHECKS = "l5_monitoring"
pytestmark = [pytest.mark.integration, clusterkit.needs_local]

BODY = {
    "controller": {"name": "ctl", "cpus": 1, "memory_mb": 512},
    "compute": [{"names": "c[1-2]", "cpus": 1, "memory_mb": 512}],
    "slurm": {"partitions": [{"name": "all", "nodes": "ALL", "default": True}]},
    "monitoring": {"nodes": "ALL", "scrape_age_s_max": 20, "alerting": {}},
}
NODES = ("ctl", "c1", "c2")
ALERTING = {"test_prometheus_rules_load_and_evaluate_without_errors", "test_prometheus_sends_to_the_alertmanager",
            "test_the_watchdog_alert_reaches_the_alertmanager", "test_a_node_down_alert_is_routed_to_a_receiver_that_sends"}
STORAGE = "test_prometheus_keeps_its_data_long_enough_and_has_room"
#: and the receiver check, which asks Alertmanager only (so Prometheus stopped does not fail it)
RECEIVER = "test_the_watchdog_is_routed_to_a_receiver_that_sends"
NODE_DOWN_ROUTE = "test_a_node_down_alert_is_routed_to_a_receiver_that_sends"
CHECK_COUNT = 2 + 3 * len(NODES) + len(ALERTING) + 1


monitored = clusterkit.module_cluster("m", BODY, "monitored")


def run_checks(pytester, path: Path):
    return clusterkit.run_checks(pytester, path, CHECKS)


def config_variant(path: Path, directory: Path, edit) -> Path:
    """The module cluster's config with ``edit(monitoring section)`` applied, written to
    ``directory``: the same running cluster, judged against other expectations."""
    doc = yaml.safe_load(path.read_text())
    edit(doc["monitoring"])
    variant = directory / "cluster.yaml"
    variant.write_text(yaml.safe_dump(doc, sort_keys=False))
    return variant


def per_node(name: str) -> set[str]:
    return {f"test_prometheus_scrapes_the_node[{name}]", f"test_prometheus_holds_the_nodes_own_current_data[{name}]"}


def test_healthy_cluster_passes_every_monitoring_check(monitored, pytester):
    _, path = monitored
    results = run_checks(pytester, path)
    assert len(results) == CHECK_COUNT
    assert clusterkit.failures(results) == {}


def test_exporter_stopped_fails_the_nodes_three_checks(monitored, pytester):
    engine, path = monitored
    with monfaults.exporter_stopped(engine, "c2"):
        failed = clusterkit.failures(run_checks(pytester, path))
    assert set(failed) == {"test_node_exporter_serves_the_required_metrics[c2]", *per_node("c2")}
    msg = failed["test_node_exporter_serves_the_required_metrics[c2]"]
    assert "c2: its node exporter does not answer" in msg and "connection refused" in msg
    assert "Prometheus cannot scrape c2:9100" in failed["test_prometheus_scrapes_the_node[c2]"]
    assert "health down" in failed["test_prometheus_scrapes_the_node[c2]"]
    assert "holds no node_uname_info" in failed["test_prometheus_holds_the_nodes_own_current_data[c2]"]


def test_exporter_without_a_required_collector(monitored, pytester):
    engine, path = monitored
    with monfaults.exporter_without_collector(engine, "c1", "loadavg"):
        failed = clusterkit.failures(run_checks(pytester, path))
    assert list(failed) == ["test_node_exporter_serves_the_required_metrics[c1]"]
    msg = failed["test_node_exporter_serves_the_required_metrics[c1]"]
    assert "no sample of node_load1, node_load5, node_load15" in msg
    assert "collector(s) loadavg not enabled" in msg


def test_exporter_with_a_textfile_it_cannot_read(monitored, pytester):
    engine, path = monitored
    with monfaults.exporter_with_unreadable_textfile(engine, "c2"):
        failed = clusterkit.failures(run_checks(pytester, path))
    assert list(failed) == ["test_node_exporter_serves_the_required_metrics[c2]"]
    assert "the textfile collector could not read a .prom file" in failed["test_node_exporter_serves_the_required_metrics[c2]"]


def test_prometheus_data_directory_full(monitored, pytester):
    engine, path = monitored
    with monfaults.tsdb_full(engine) as tsdb:
        failed = clusterkit.failures(run_checks(pytester, path))
    assert list(failed) == [STORAGE]
    assert f"ctl: Prometheus's data directory {tsdb} (on {tsdb}) has 0.00 GiB free" in failed[STORAGE]


def test_retention_shorter_than_the_config_wants(monitored, pytester, tmp_path):
    """The local Prometheus keeps 1 day; a config that wants 30 fails (same running cluster)."""
    _, path = monitored
    variant = config_variant(path, tmp_path, lambda m: m.update(retention_days_min=30))
    failed = clusterkit.failures(clusterkit.run_checks(pytester, variant, "l5_monitoring"))
    assert list(failed) == [STORAGE]
    assert "keeps its data 1 day (storage.tsdb.retention.time=1d), the config wants at least 30 days" in failed[STORAGE]


def test_node_missing_from_the_scrape_config(monitored, pytester):
    engine, path = monitored
    with monfaults.scrape_target_dropped(engine, "c1"):
        failed = clusterkit.failures(run_checks(pytester, path))
    assert set(failed) == per_node("c1")
    for msg in failed.values():
        assert "has no scrape target for c1:9100" in msg and "Add c1:9100 to its scrape config" in msg


def test_target_that_reaches_another_host(monitored, pytester):
    engine, path = monitored
    with monfaults.target_reaches_other_host(engine, "c1", "c2"):
        failed = clusterkit.failures(run_checks(pytester, path))
    assert list(failed) == ["test_prometheus_holds_the_nodes_own_current_data[c1]"]
    assert "come from c2 (node_uname_info nodename), not from c1" in failed[
        "test_prometheus_holds_the_nodes_own_current_data[c1]"]


def test_prometheus_stopped(monitored, pytester):
    engine, path = monitored
    with monfaults.prometheus_stopped(engine):
        failed = clusterkit.failures(run_checks(pytester, path))
    assert set(failed) == {"test_prometheus_is_ready_and_answers_queries", STORAGE, *ALERTING} | set().union(
        *map(per_node, NODES))
    assert re.search(r"Prometheus at http://[\d.]+:9090 is not ready \(asked from ctl\)",
                     failed["test_prometheus_is_ready_and_answers_queries"])
    assert "Prometheus cannot say what it scrapes" in failed["test_prometheus_scrapes_the_node[c1]"]


def test_an_existing_cluster_is_only_read_over_ssh(monitored, pytester, tmp_path):
    """The same checks through the existing provider (the cluster's ``--hpc-keep`` handoff,
    reached over SSH, Prometheus and Alertmanager given by URL): they pass, go red for a stopped
    exporter, and change nothing (the Prometheus configuration and every daemon's pid are as
    before)."""
    from pytest_hpcvalidate.config import load_config
    from pytest_hpcvalidate.providers.handoff import kept_cluster_doc
    from pytest_hpcvalidate.providers.local.addons import monitoring as addon

    engine, path = monitored
    doc = kept_cluster_doc(load_config(str(path)), engine.cluster)
    assert doc["provider"] == "existing" and doc["monitoring"]["nodes"] == "ALL"
    # as a cluster whose Prometheus and Alertmanager live on a monitoring host: given by URL
    ctl = engine.cluster.controller.address
    doc["monitoring"]["prometheus_url"] = f"http://{ctl}:9090"
    # by address, while Prometheus sends to it by name (ctl:9093): matched by what the name resolves to
    doc["monitoring"]["alerting"]["alertmanager_url"] = f"http://{ctl}:9093"
    existing = tmp_path / "existing.yaml"
    existing.write_text(yaml.safe_dump(doc, sort_keys=False))
    before = (addon.config_path(engine).read_text(),
              {(n, w): engine.daemon_pids(n, w) for n in NODES for w in (addon.EXPORTER, addon.PROMETHEUS)})
    def over_ssh() -> dict[str, str]:
        result = pytester.runpytest("--hpc-config", str(existing), "-p", "no:cacheprovider",
                                    "--hpc-report-dir", str(pytester.path / "reports"), str(SUITES / CHECKS))
        reports = [r for r in result.reprec.getreports("pytest_runtest_logreport") if r.when == "call"]
        assert len(reports) == CHECK_COUNT
        return {r.nodeid.split("::", 1)[1]: r.longreprtext for r in reports if r.outcome == "failed"}

    assert over_ssh() == {}
    after = (addon.config_path(engine).read_text(),
             {(n, w): engine.daemon_pids(n, w) for n in NODES for w in (addon.EXPORTER, addon.PROMETHEUS)})
    assert after == before
    with monfaults.exporter_stopped(engine, "c1"):
        failed = over_ssh()
    assert set(failed) == {"test_node_exporter_serves_the_required_metrics[c1]", *per_node("c1")}


def test_alertmanager_stopped(monitored, pytester):
    engine, path = monitored
    with monfaults.alertmanager_stopped(engine):
        failed = clusterkit.failures(run_checks(pytester, path))
    assert set(failed) == {"test_prometheus_sends_to_the_alertmanager", "test_the_watchdog_alert_reaches_the_alertmanager",
                           RECEIVER, NODE_DOWN_ROUTE}
    assert re.search(r"Alertmanager at http://[\d.]+:9093 is not ready", failed["test_prometheus_sends_to_the_alertmanager"])
    assert "connection refused" in failed["test_the_watchdog_alert_reaches_the_alertmanager"]
    assert "connection refused" in failed[RECEIVER]


def test_a_rule_that_fails_to_evaluate(monitored, pytester):
    engine, path = monitored
    with monfaults.broken_rule_added(engine):
        failed = clusterkit.failures(run_checks(pytester, path))
    assert list(failed) == ["test_prometheus_rules_load_and_evaluate_without_errors"]
    msg = failed["test_prometheus_rules_load_and_evaluate_without_errors"]
    assert "hpcv-broken/hpcv:cpu_per_load: multiple matches for labels" in msg and "can never fire" in msg


def test_no_alert_watches_nodes_going_down(monitored, pytester):
    engine, path = monitored
    with monfaults.node_down_alert_removed(engine):
        failed = clusterkit.failures(run_checks(pytester, path))
    assert list(failed) == ["test_prometheus_rules_load_and_evaluate_without_errors"]
    msg = failed["test_prometheus_rules_load_and_evaluate_without_errors"]
    assert "watches the up series: a node whose exporter stops answering raises no alert" in msg
    assert "alerting rules: hpcvalidate/Watchdog" in msg


def test_prometheus_sending_to_no_alertmanager(monitored, pytester):
    engine, path = monitored
    with monfaults.prometheus_without_alertmanager(engine):
        failed = clusterkit.failures(run_checks(pytester, path))
    assert set(failed) == {"test_prometheus_sends_to_the_alertmanager", "test_the_watchdog_alert_reaches_the_alertmanager"}
    assert re.search(r"sends alerts to no Alertmanager, not to the one at [\d.]+ or ctl:9093",
                     failed["test_prometheus_sends_to_the_alertmanager"])
    assert "Prometheus fires Watchdog but Alertmanager" in failed["test_the_watchdog_alert_reaches_the_alertmanager"]


def test_watchdog_silenced(monitored, pytester):
    engine, path = monitored
    with monfaults.watchdog_silenced(engine) as silence:
        failed = clusterkit.failures(run_checks(pytester, path))
    assert list(failed) == ["test_the_watchdog_alert_reaches_the_alertmanager"]
    assert f"but suppressed (silenced by {silence}" in failed["test_the_watchdog_alert_reaches_the_alertmanager"]


def test_alertmanager_routes_everything_to_a_receiver_that_discards(monitored, pytester):
    """route: {receiver: "null"}: Alertmanager still holds the watchdog, active, unsilenced (the
    older checks pass) but tells nobody."""
    engine, path = monitored
    with monfaults.alertmanager_routes_to_null(engine):
        failed = clusterkit.failures(run_checks(pytester, path))
    assert set(failed) == {RECEIVER, NODE_DOWN_ROUTE}
    msg = failed[RECEIVER]
    assert "routes Watchdog to null, which sends nowhere (no email_configs, webhook_configs" in msg


def test_the_node_down_alert_routed_to_a_receiver_that_discards(monitored, pytester):
    """A route of its own sends NodeExporterDown to null (the watchdog still reaches the webhook):
    only the routing check of the alert that does not fire goes red."""
    engine, path = monitored
    with monfaults.node_down_alert_routed_to_null(engine):
        failed = clusterkit.failures(run_checks(pytester, path))
    assert list(failed) == [NODE_DOWN_ROUTE]
    assert "routes the alert on a node going down nowhere that sends: NodeExporterDown to null" in failed[NODE_DOWN_ROUTE]


def test_a_rule_group_the_config_names_is_not_loaded(monitored, pytester, tmp_path):
    """The config asks for a rule group Prometheus does not have (the same running cluster,
    read with a config that names one more group)."""
    _, path = monitored
    variant = config_variant(path, tmp_path, lambda m: m["alerting"].update(rule_groups=["hpcvalidate", "site-gpu-health"]))
    failed = clusterkit.failures(clusterkit.run_checks(pytester, variant, "l5_monitoring/test_rules_and_alerts.py"))
    assert list(failed) == ["test_prometheus_rules_load_and_evaluate_without_errors"]
    assert "has not loaded the rule group(s) site-gpu-health; loaded: hpcvalidate" in failed[
        "test_prometheus_rules_load_and_evaluate_without_errors"]
