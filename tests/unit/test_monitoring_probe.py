"""The monitoring probe's parsers and judgements, against outputs recorded from Debian 12's
Prometheus 2.42 and node exporter 1.5.0 (``fixtures/monitoring/README.md``), and degraded
variants made from them."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_hpcvalidate.config.model import NODE_EXPORTER_COLLECTORS, NODE_EXPORTER_METRICS
from pytest_hpcvalidate.probes import monitoring as probe

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "monitoring"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.fixture(scope="module")
def exporter_text() -> str:
    return fixture("node-exporter-1.5.0-metrics.txt")


def test_recorded_exporter_output_has_every_required_metric(exporter_text):
    samples = probe.parse_metrics(exporter_text)
    assert probe.exporter_problems(samples, NODE_EXPORTER_METRICS, NODE_EXPORTER_COLLECTORS) == []
    assert [labels["nodename"] for labels, _ in samples["node_uname_info"]] == ["c1"]
    assert samples["node_memory_MemTotal_bytes"][0][1] > 0


def without(text: str, pattern: str) -> str:
    return "\n".join(line for line in text.splitlines() if not re.match(pattern, line)) + "\n"


def test_a_disabled_collector_is_named_with_its_missing_metrics(exporter_text):
    degraded = without(exporter_text, r"(node_load\d+ |node_scrape_collector_\w+\{collector=\"loadavg\"\})")
    problems = probe.exporter_problems(probe.parse_metrics(degraded), NODE_EXPORTER_METRICS, NODE_EXPORTER_COLLECTORS)
    assert problems == ["no sample of node_load1, node_load5, node_load15 (a collector disabled or failing?)",
                        "collector(s) loadavg not enabled (started with --no-collector.<name>?)"]


def test_a_failing_required_collector_is_named(exporter_text):
    degraded = exporter_text.replace('node_scrape_collector_success{collector="netdev"} 1',
                                     'node_scrape_collector_success{collector="netdev"} 0')
    assert degraded != exporter_text
    problems = probe.exporter_problems(probe.parse_metrics(degraded), NODE_EXPORTER_METRICS, ["netdev", "cpu"])
    assert len(problems) == 1 and problems[0].startswith("collector(s) netdev failed")


def test_collectors_with_no_data_fail_only_when_required(exporter_text):
    """The node exporter reports success 0 for a collector with nothing to report (no
    InfiniBand here): not a problem unless the config requires that collector."""
    samples = probe.parse_metrics(exporter_text)
    assert ({"collector": "infiniband"}, 0.0) in samples["node_scrape_collector_success"]
    assert probe.exporter_problems(samples, [], ["cpu"]) == []
    assert probe.exporter_problems(samples, [], ["infiniband"])[0].startswith("collector(s) infiniband failed")


def test_a_textfile_that_does_not_parse_is_named():
    samples = probe.parse_metrics(fixture("node-exporter-1.5.0-metrics-bad-textfile.txt"))
    assert ({"collector": "textfile"}, 1.0) in samples["node_scrape_collector_success"]  # the collector "succeeds"
    [problem] = probe.exporter_problems(samples, NODE_EXPORTER_METRICS, NODE_EXPORTER_COLLECTORS)
    assert problem.startswith("the textfile collector could not read a .prom file")


def test_a_zero_memory_total_is_a_problem(exporter_text):
    degraded = re.sub(r"^node_memory_MemTotal_bytes .*$", "node_memory_MemTotal_bytes 0", exporter_text, flags=re.M)
    assert "node_memory_MemTotal_bytes is 0" in probe.exporter_problems(probe.parse_metrics(degraded), [], [])


def test_what_is_not_the_text_format_is_an_error():
    with pytest.raises(probe.MonitoringError, match="not the Prometheus text format"):
        probe.parse_metrics('<html><body>404 page not found {"</body></html>\n')


@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True).filter(lambda n: not n.endswith(("_total", "_created", "_count", "_sum", "_bucket"))),
                       st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=20))
def test_exposition_round_trips(values):
    text = "".join(f'# TYPE {n} gauge\n{n}{{node="x"}} {v!r}\n' for n, v in values.items())
    samples = probe.parse_metrics(text)
    assert {n: s[0][1] for n, s in samples.items()} == pytest.approx(values)
    assert all(s[0][0] == {"node": "x"} for s in samples.values())
    assert probe.exporter_problems(samples, list(values), []) == []
    assert probe.exporter_problems(samples, [*values, "node_absent"], [])[0] == \
        "no sample of node_absent (a collector disabled or failing?)"


def test_recorded_targets():
    targets = probe.parse_targets(fixture("prometheus-2.42-targets.json"))
    assert [(t.address, t.instance, t.job, t.health) for t in targets] == [
        ("ctl:9100", "ctl:9100", "node", "up"), ("c1:9100", "c1:9100", "node", "up"), ("c2:9100", "c2:9100", "node", "up")]
    assert targets[1].last_scrape == pytest.approx(
        datetime(2026, 12, 3, 15, 20, 33, 614814, tzinfo=timezone.utc).timestamp())
    assert (targets[1].host, targets[1].port) == ("c1", 9100)


def test_recorded_target_down_keeps_its_error():
    down = [t for t in probe.parse_targets(fixture("prometheus-2.42-targets-c2-down.json")) if t.health != "up"]
    assert [t.address for t in down] == ["c2:9100"]
    assert "connection refused" in down[0].last_error and down[0].health == "down"


@pytest.mark.parametrize("address, found", [
    ("c1:9100", True), ("10.0.0.11:9100", True), ("c1.cluster.example:9100", True),
    ("c10:9100", False), ("c1:9101", False), ("c1", False), ("10.0.0.111:9100", False),
])
def test_targets_of_node_by_name_domain_or_address(address, found):
    t = probe.ScrapeTarget(address, address, "node", "up", "", 1.0)
    assert bool(probe.targets_of_node([t], "c1", "10.0.0.11", 9100)) is found


def test_targets_of_node_in_the_configured_job_only():
    ts = [probe.ScrapeTarget("c1:9100", "c1:9100", "other", "up", "", 1.0)]
    assert probe.targets_of_node(ts, "c1", "10.0.0.11", 9100, job="node") == []
    assert probe.targets_of_node(ts, "c1", "10.0.0.11", 9100, job="other") == ts


def test_recorded_queries():
    assert probe.parse_query(fixture("prometheus-2.42-query-time.json")) == [({}, 1796311234.296, 1796311234.296)]
    [(labels, value, _)] = probe.parse_query(fixture("prometheus-2.42-query-uname.json"))
    assert labels["nodename"] == "c1" and value == 1.0
    [(_, sample_time, evaluated)] = probe.parse_query(fixture("prometheus-2.42-query-timestamp.json"))
    assert 0 < evaluated - sample_time < 2


def test_a_query_error_says_what_prometheus_said():
    with pytest.raises(probe.MonitoringError, match="parse error: unclosed left parenthesis"):
        probe.parse_query(fixture("prometheus-2.42-query-error.json"))
    with pytest.raises(probe.MonitoringError, match="not JSON"):
        probe.parse_targets("Prometheus Server is Ready.")


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)), st.integers(0, 999))
def test_prometheus_times_to_epoch(moment, nanos):
    moment = moment.replace(tzinfo=timezone.utc)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + f"{nanos:03d}Z"
    assert probe.parse_time(stamp) == pytest.approx(moment.timestamp(), abs=1e-6)
    offset = (moment + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "+02:00"
    assert probe.parse_time(offset) == pytest.approx(moment.timestamp(), abs=1e-6)


def test_never_scraped_is_none():
    assert probe.parse_time("0001-01-01T00:00:00Z") is None
    with pytest.raises(probe.MonitoringError):
        probe.parse_time("yesterday")


def test_recorded_rules_name_the_one_that_fails():
    rules = probe.parse_rules(fixture("prometheus-2.42-rules-one-broken.json"))
    assert [(r.group, r.name, r.kind, r.health) for r in rules] == [
        ("broken", "bad:sum", "recording", "err"), ("hpcvalidate", "Watchdog", "alerting", "ok"),
        ("hpcvalidate", "NodeExporterDown", "alerting", "ok")]
    assert "many-to-one matching must be explicit" in rules[0].last_error
    assert [r.state for r in rules[1:]] == ["firing", "inactive"]
    assert [r.labels for r in rules[1:]] == [(("severity", "none"),), ()]  # what routes match on


def test_amtool_routes_test_script_carries_the_config_and_quoted_labels():
    script = probe.routes_test_script("route: {receiver: x}\nreceivers: [{name: x}]\n", {"alertname": "Node Down", "job": "n'1"})
    assert script == ("""amtool config routes test --config.file=/dev/stdin 'alertname=Node Down' 'job=n'"'"'1' """
                      "2>/dev/null <<'HPCV_AM_CONFIG'\nroute: {receiver: x}\nreceivers: [{name: x}]\nHPCV_AM_CONFIG\n")
    if shutil.which("amtool"):  # the script as the check runs it, through a shell
        r = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
        assert (r.returncode, r.stdout.strip()) == (0, "x"), r.stderr


def test_recorded_alertmanagers_and_received_alerts():
    [url] = probe.parse_alertmanagers(fixture("prometheus-2.42-alertmanagers.json"))
    assert probe.url_names(url, "ctl", "127.0.0.1", 19093)
    [alert] = probe.parse_received_alerts(fixture("alertmanager-0.25-alerts.json"))
    assert (alert.name, alert.state, alert.silenced_by, alert.inhibited_by) == ("Watchdog", "active", (), ())
    assert alert.receivers == ("null",)  # recorded when the local Alertmanager still discarded everything


def test_receivers_and_their_integrations_from_alertmanagers_status():
    # /api/v2/status of Alertmanager 0.25 running a webhook, an email and a null receiver
    receivers = probe.parse_receivers(fixture("alertmanager-0.25-status.json"))
    assert receivers == {"hpcv-webhook": ("webhook",), "team-mails": ("email",), "null": ()}
    with pytest.raises(probe.MonitoringError, match="Alertmanager status: no configuration"):
        probe.parse_receivers('{"cluster": {}}')


@pytest.mark.parametrize("url, found", [
    ("http://ctl:9093/api/v2/alerts", True), ("http://ctl.cluster.example:9093/api/v2/alerts", True),
    ("http://10.0.0.10:9093/api/v2/alerts", True), ("http://ctl:9094/api/v2/alerts", False),
    ("http://ctl2:9093/api/v2/alerts", False), ("not a url", False),
])
def test_url_names_the_node_on_its_port(url, found):
    assert probe.url_names(url, "ctl", "10.0.0.10", 9093) is found


def test_a_silenced_alert_keeps_who_silenced_it():
    text = fixture("alertmanager-0.25-alerts.json").replace('"silencedBy":[]', '"silencedBy":["7f3a"]').replace(
        '"state":"active"', '"state":"suppressed"')
    [alert] = probe.parse_received_alerts(text)
    assert (alert.state, alert.silenced_by) == ("suppressed", ("7f3a",))
    with pytest.raises(probe.MonitoringError, match="not a list of alerts"):
        probe.parse_received_alerts('{"status": "success"}')


def test_recorded_flags_give_path_and_retention():
    flags = probe.parse_flags(fixture("prometheus-2.42-flags.json"))
    assert flags["storage.tsdb.path"] == "/tmp/am/data3"
    assert probe.retention_s(flags) == 15 * 86400


@pytest.mark.parametrize("flags, kept", [
    ({"storage.tsdb.retention.time": "0s", "storage.tsdb.retention": "0s", "storage.tsdb.retention.size": "0B"},
     15 * 86400),  # neither given: Prometheus's default
    ({"storage.tsdb.retention.time": "0s", "storage.tsdb.retention.size": "50GB"}, None),  # size only: no time limit
    ({"storage.tsdb.retention.time": "1y", "storage.tsdb.retention.size": "50GB"}, 365 * 86400),
    ({"storage.tsdb.retention.time": "0s", "storage.tsdb.retention": "2w"}, 14 * 86400),  # the older flag
])
def test_retention_from_flags(flags, kept):
    assert probe.retention_s(flags) == kept


@given(st.lists(st.tuples(st.integers(0, 999), st.sampled_from(["y", "w", "d", "h", "m", "s", "ms"])), min_size=1, max_size=4))
def test_durations(parts):
    text = "".join(f"{n}{u}" for n, u in parts)
    seconds = {"y": 31536000, "w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
    assert probe.parse_duration(text) == pytest.approx(sum(n * seconds[u] for n, u in parts))


@pytest.mark.parametrize("text", ["", "15", "d", "1.5d", "15 days", "-1d"])
def test_what_is_not_a_duration(text):
    with pytest.raises(probe.MonitoringError, match="not a Prometheus duration"):
        probe.parse_duration(text)


@pytest.mark.parametrize("query, job, watches", [
    ('up{job="node"} == 0', "node", True), ('up{job="node"} == 0', None, True), ("up == 0", "node", True),
    ('absent(up{job="node"})', "node", True), ('up{job="slurm"} == 0', "node", False),
    ("node_up == 0", None, False), ("vector(1)", None, False), ("sum by (instance) (up) < 1", "node", True),
    ('up{job="node",instance=~"c.*"} == 0', "node", True), ("group:up", None, False),
])
def test_an_alert_watching_up(query, job, watches):
    rule = probe.Rule("g", "A", "alerting", "ok", "", "inactive", query)
    assert rule.watches_up(job) is watches
    assert probe.Rule("g", "r", "recording", "ok", "", "", query).watches_up(job) is False


def test_the_recorded_rules_watch_up():
    rules = probe.parse_rules(fixture("prometheus-2.42-rules-one-broken.json"))
    assert [r.name for r in rules if r.watches_up("node")] == ["NodeExporterDown"]
