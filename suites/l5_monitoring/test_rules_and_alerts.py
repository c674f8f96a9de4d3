"""Layer 5, alerting (``monitoring.alerting``): Prometheus's rules evaluate, it sends to the
Alertmanager, and an alert that always fires (the dead man's switch, ``watchdog_alert``) is
active there — the one end-to-end proof that a node going down would page someone. The seed
project checked only that the Alertmanager service was active and that ``alertmanagers:``
appeared in the configuration. All GETs, from the Prometheus node: nothing is changed.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from pytest_hpcvalidate.probes import monitoring as probe
from pytest_hpcvalidate.capabilities import not_applicable

from . import or_fail

pytestmark = pytest.mark.requires("alerting")


def test_prometheus_rules_load_and_evaluate_without_errors(prometheus, settings):
    """Every rule evaluates (a rule in error can never fire), the named groups are loaded, and
    (``node_down_alert``) some alerting rule watches the ``up`` series."""
    rules = or_fail("Prometheus cannot list its rules", prometheus.rules)
    groups = {r.group for r in rules}
    missing = [g for g in settings.alerting.rule_groups if g not in groups]
    assert not missing, (f"Prometheus ({prometheus.url}) has not loaded the rule group(s) {', '.join(missing)}; "
                         f"loaded: {', '.join(sorted(groups)) or 'none'} (rule_files in its configuration)")
    broken = [f"{r.group}/{r.name}: {r.last_error or r.health}" for r in rules if r.health != "ok"]
    assert not broken, (f"{len(broken)} of Prometheus's {len(rules)} rules do not evaluate (health not ok), so "
                        f"their alerts can never fire: " + "; ".join(broken[:8]))
    if settings.alerting.node_down_alert:
        assert any(r.watches_up(settings.job) for r in rules), (
            f"no alerting rule of Prometheus ({prometheus.url}) watches the up series"
            + (f" of job {settings.job!r}" if settings.job else "")
            + f": a node whose exporter stops answering raises no alert (add one, e.g. "
            f"up{{job=\"{settings.job or 'node'}\"}} == 0 for 5m); alerting rules: "
            + (", ".join(f"{r.group}/{r.name}" for r in rules if r.kind == "alerting") or "none"))


def test_prometheus_sends_to_the_alertmanager(prometheus, alertmanager, alertmanager_url):
    """One of the Alertmanagers Prometheus sends to is the configured one: same port, and a host
    that is the same name, or resolves on the Prometheus node to one of the same addresses."""
    url, hosts, port = alertmanager_url
    urls = or_fail("Prometheus cannot list its Alertmanagers", prometheus.alertmanagers)
    ours = set(hosts).union(*(probe.resolve(prometheus.node, h) for h in hosts))

    def is_ours(u: str) -> bool:
        parts = urlsplit(u)
        theirs = {parts.hostname or ""} | probe.resolve(prometheus.node, parts.hostname or "")
        return parts.port == port and bool(theirs & ours)

    assert any(is_ours(u) for u in urls), (
        f"Prometheus ({prometheus.url}) sends alerts to {', '.join(urls) or 'no Alertmanager'}, not to the one at "
        f"{' or '.join(sorted(hosts))}:{port}: add it under alerting.alertmanagers in Prometheus's configuration")
    reply = alertmanager.ready()
    assert reply.ok, f"Alertmanager at {url} is not ready: {reply.describe()} (asked from {alertmanager.node.name})"


def test_the_watchdog_alert_reaches_the_alertmanager(prometheus, alertmanager, settings):
    name = settings.alerting.watchdog_alert
    if not name:
        not_applicable("monitoring.alerting.watchdog_alert is null: no always-firing alert to follow")
    rules = or_fail("Prometheus cannot list its rules", prometheus.rules)
    mine = [r for r in rules if r.kind == "alerting" and r.name == name]
    assert mine, (f"Prometheus has no alerting rule {name}: add one that always fires (expr: vector(1)), so that "
                  f"Alertmanager shows the path from rules to receivers works")
    assert any(r.state == "firing" for r in mine), (
        f"Prometheus's alert {name} is {', '.join(sorted({r.state for r in mine}))}, not firing: its expression "
        f"must always hold (vector(1))")
    received = [a for a in or_fail(f"Alertmanager at {alertmanager.url}", alertmanager.alerts) if a.name == name]
    assert received, (f"Prometheus fires {name} but Alertmanager ({alertmanager.url}) has not received it: alerts "
                      f"do not reach Alertmanager (Prometheus's alerting configuration, or the network between them)")
    active = [a for a in received if a.state == "active"]
    assert active, (f"Alertmanager holds {name} but {received[0].state} (silenced by "
                    f"{', '.join(received[0].silenced_by) or 'nothing'}, inhibited by "
                    f"{', '.join(received[0].inhibited_by) or 'nothing'}): it would reach no receiver")


#: what a receiver that sends nowhere lacks, and the fix (both routing checks say it)
NO_INTEGRATION = "no email_configs, webhook_configs, pagerduty_configs, ..."
ROUTE_IT = "route it to a receiver that sends"


def test_the_watchdog_is_routed_to_a_receiver_that_sends(alertmanager, settings):
    """Alertmanager routes the always-firing alert to a receiver with an integration (email,
    webhook, PagerDuty ...): one without any discards what reaches it, so the dead man's switch
    would reach nobody, and neither would a page routed the same way."""
    name = settings.alerting.watchdog_alert
    if not name:
        not_applicable("monitoring.alerting.watchdog_alert is null: no always-firing alert to follow")
    held = [a for a in or_fail(f"Alertmanager at {alertmanager.url}", alertmanager.alerts) if a.name == name]
    if not held:
        pytest.skip(f"Alertmanager holds no {name} alert (test_the_watchdog_alert_reaches_the_alertmanager says why)")
    receivers = or_fail(f"Alertmanager at {alertmanager.url}", alertmanager.receivers)
    routed = sorted({r for a in held for r in a.receivers})
    sending = {r: receivers.get(r, ()) for r in routed if receivers.get(r)}
    assert sending, (f"Alertmanager ({alertmanager.url}) routes {name} to {', '.join(routed) or 'no receiver'}, which "
                     f"send{'s' if len(routed) == 1 else ''} nowhere ({NO_INTEGRATION}): the dead man's switch "
                     f"reaches nobody; {ROUTE_IT}")


def test_a_node_down_alert_is_routed_to_a_receiver_that_sends(prometheus, alertmanager, settings):
    """(``node_down_alert``) The alert Prometheus raises when a node's exporter stops answering
    (an alerting rule on ``up``, with the labels it adds) is routed by Alertmanager's running
    configuration to a receiver with an integration: ``amtool config routes test`` on the
    Prometheus node, since the alert does not fire on a healthy cluster."""
    if not settings.alerting.node_down_alert:
        not_applicable("monitoring.alerting.node_down_alert is false")
    watching = [r for r in or_fail("Prometheus cannot list its rules", prometheus.rules) if r.watches_up(settings.job)]
    if not watching:
        pytest.skip("no alerting rule watches the up series (test_prometheus_rules_load_and_evaluate_without_errors "
                    "says why)")
    receivers = or_fail(f"Alertmanager at {alertmanager.url}", alertmanager.receivers)
    routed: dict[str, tuple[str, ...]] = {}
    for rule in watching:
        labels = {"alertname": rule.name, "job": settings.job or "node", **dict(rule.labels)}
        try:
            routed[rule.name] = alertmanager.routes(labels)
        except probe.MonitoringError as exc:
            if "is not installed" in str(exc):
                pytest.skip(str(exc))
            pytest.fail(str(exc), pytrace=False)
    assert any(receivers.get(r) for names in routed.values() for r in names), (
        "Alertmanager routes the alert on a node going down nowhere that sends: "
        + "; ".join(f"{alert} to {', '.join(names) or 'no receiver'}" for alert, names in routed.items())
        + f" ({NO_INTEGRATION}): a node going down pages nobody; {ROUTE_IT}")
