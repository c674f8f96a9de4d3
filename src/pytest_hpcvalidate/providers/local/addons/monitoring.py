"""Prometheus and the node exporter on a local cluster (the config's ``monitoring`` section).

- one ``prometheus-node-exporter`` per monitored node (``monitoring.nodes``), listening on the
  node's own address; its systemd collector is off (the nodes run no systemd: it would fail
  every scrape and the collectors check with it);
- one ``prometheus`` on the Prometheus node (default: the controller), its configuration and
  TSDB under the work directory, scraping every exporter by node name (``c1:9100``, so the
  instance label names the node) every ``scrape_interval_s`` in one job (``monitoring.job``,
  default ``node``); ``--web.enable-lifecycle`` so a configuration can be reloaded;
- with ``monitoring.alerting``: ``prometheus-alertmanager`` on the Alertmanager node (no HA
  cluster port) routing every alert to a webhook receiver: a small HTTP sink beside it
  (``alert-webhook``, port 9097, the host's python3) that appends what it is sent to a file,
  so a notification is seen to leave Alertmanager; a rules file with the always-firing watchdog
  alert and an exporter-down alert, evaluated every scrape interval; alerts are resent every
  10 s (``--rules.alert.resend-delay``; Prometheus's default is 1 min): the first send, made
  before Prometheus has discovered its Alertmanager (~5 s), is lost, so the watchdog arrives
  ~10 s after Prometheus starts. Alertmanager holds an alert for 4 resend delays after it was
  last sent: at 3 s (12 s held) a Prometheus starved for seconds on a loaded 2-core CI machine
  let the watchdog lapse between two checks; 10 s holds it 40 s.

All of them are recorded daemons of their node, launched like slurmd (foreground, the node's
namespaces and cgroups): teardown and ``cleanup`` find them with the rest. ``up`` returns
once every target has been scraped once (Prometheus applies new targets about 5 s after it
starts), the watchdog alert is in Alertmanager and its notification has reached the webhook,
so the checks judge a steady state, not a start-up.
"""

from __future__ import annotations

import json
import math
import shutil
import time

import yaml

from ....probes.monitoring import Alertmanager, MonitoringError, Prometheus
from ...base import ProvisioningError
from .. import daemons
from . import stop_daemons

NAME = "monitoring"
#: program -> the Debian package that ships it
BINARIES = {"prometheus": "prometheus", "prometheus-node-exporter": "prometheus-node-exporter", "curl": "curl"}
ALERTING_BINARIES = {"prometheus-alertmanager": "prometheus-alertmanager"}
EXPORTER = "node-exporter"
PROMETHEUS = "prometheus"
ALERTMANAGER = "alertmanager"
WEBHOOK = "alert-webhook"
WEBHOOK_PORT = 9097
WEBHOOK_RECEIVER = "hpcv-webhook"
#: the webhook receiver: answers every POST with 200 and appends its body to a file
WEBHOOK_PY = """\
import http.server, sys
out = open(sys.argv[3], "ab", buffering=0)
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        out.write(self.rfile.read(int(self.headers.get("Content-Length") or 0)) + b"\\n")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Sink).serve_forever()
"""
READY_TIMEOUT_S = 40.0
RESEND_S = 10


def settings(spec) -> dict:
    """``spec.extra["monitoring"]``: the validated section plus the resolved ``nodes`` list and
    ``prometheus_node`` (see ``spec_from_config``)."""
    return spec.extra.get("monitoring") or {}


def applies(spec) -> bool:
    return bool(settings(spec))


def config_path(engine):
    return engine.work_dir / "monitoring" / "prometheus.yml"


def job_name(spec) -> str:
    return settings(spec).get("job") or "node"


def alerting(spec) -> dict | None:
    return settings(spec).get("alerting")


def rules_path(engine):
    return engine.work_dir / "monitoring" / "rules.yml"


def prometheus_yml(spec, nodes: list[str] | None = None, rules: str | None = None) -> str:
    """Prometheus's configuration: one static job over ``nodes`` (default: every monitored node);
    with alerting, the ``rules`` file and the Alertmanager."""
    m = settings(spec)
    interval = float(m["scrape_interval_s"])
    port = int(m["node_exporter_port"])
    doc: dict = {
        "global": {"scrape_interval": f"{interval:g}s", "scrape_timeout": f"{min(interval, 10.0):g}s",
                   "evaluation_interval": f"{interval:g}s"},
        "scrape_configs": [{"job_name": job_name(spec), "static_configs": [
            {"targets": [f"{n}:{port}" for n in (m["nodes"] if nodes is None else nodes)]}]}],
    }
    a = alerting(spec)
    if a:
        doc["rule_files"] = [rules]
        doc["alerting"] = {"alertmanagers": [{"static_configs": [
            {"targets": [f"{m['alertmanager_node']}:{int(a['alertmanager_port'])}"]}]}]}
    return "# written by pytest-hpcvalidate (local provider)\n" + yaml.safe_dump(doc, sort_keys=False)


def rules_yml(spec) -> str:
    """The always-firing watchdog (named as the config says) and an exporter-down alert."""
    a = alerting(spec) or {}
    rules = []
    if a.get("watchdog_alert"):
        rules.append({"alert": a["watchdog_alert"], "expr": "vector(1)",
                      "annotations": {"summary": "always firing: proves that alerts reach Alertmanager"}})
    # a PromQL string: JSON's escapes are PromQL's (a job name may hold quotes or backslashes)
    rules.append({"alert": "NodeExporterDown", "expr": f"up{{job={json.dumps(job_name(spec))}}} == 0", "for": "1m"})
    return yaml.safe_dump({"groups": [{"name": "hpcvalidate", "rules": rules}]}, sort_keys=False)


def alertmanager_yml(engine, receiver: str = WEBHOOK_RECEIVER, quiet: tuple[str, ...] = ()) -> str:
    """Every alert to ``receiver``: the webhook (notifications within a second of an alert's
    arrival), or ``null``, a receiver without integrations (it discards); the alerts named in
    ``quiet`` to ``null`` by a route of their own."""
    n = engine.node_spec_of(settings(engine.spec)["alertmanager_node"])
    routes = [{"matchers": [f"alertname={json.dumps(name)}"], "receiver": "null"} for name in quiet]
    return yaml.safe_dump({
        "route": {"receiver": receiver, "group_by": ["alertname"], "group_wait": "1s", "group_interval": "5s",
                  "repeat_interval": "1h", **({"routes": routes} if routes else {})},
        "receivers": [{"name": WEBHOOK_RECEIVER, "webhook_configs": [
                          {"url": f"http://{n.address}:{WEBHOOK_PORT}/", "send_resolved": False}]},
                      {"name": "null"}],
    }, sort_keys=False)


def webhook_log(engine):
    return engine.node_paths(settings(engine.spec)["alertmanager_node"]).root / "alert-webhook.log"


def webhook_argv(engine) -> list[str]:
    n = engine.node_spec_of(settings(engine.spec)["alertmanager_node"])
    return ["python3", str(engine.work_dir / "monitoring" / "webhook.py"), n.address, str(WEBHOOK_PORT),
            str(webhook_log(engine))]


def exporter_argv(engine, node: str, extra: list[str] | None = None) -> list[str]:
    n = engine.node_spec_of(node)
    return ["prometheus-node-exporter", f"--web.listen-address={n.address}:{int(settings(engine.spec)['node_exporter_port'])}",
            "--no-collector.systemd", *(extra or [])]


def prometheus_argv(engine) -> list[str]:
    m = settings(engine.spec)
    n = engine.node_spec_of(m["prometheus_node"])
    data = engine.node_paths(n.name).root / "prometheus"
    # alerts resent every 3 s (default 1 min): the first one reaches Alertmanager as soon as
    # Prometheus has discovered it (~5 s after start or a reload; alerts sent before go nowhere),
    # not a minute later; each stays valid in Alertmanager for 4 x 3 s, longer than that gap
    resend = [f"--rules.alert.resend-delay={RESEND_S}s"] if alerting(engine.spec) else []
    return ["prometheus", f"--config.file={config_path(engine)}", f"--storage.tsdb.path={data}",
            f"--web.listen-address={n.address}:{int(m['prometheus_port'])}", "--web.enable-lifecycle",
            f"--storage.tsdb.retention.time={retention_days(engine.spec)}d", *resend]


def retention_days(spec) -> int:
    """A day, or what ``monitoring.retention_days_min`` asks for (the retention check passes)."""
    return max(1, math.ceil(settings(spec).get("retention_days_min") or 1))


def alertmanager_argv(engine) -> list[str]:
    a, node = alerting(engine.spec), settings(engine.spec)["alertmanager_node"]
    n = engine.node_spec_of(node)
    return ["prometheus-alertmanager", f"--config.file={engine.work_dir / 'monitoring' / 'alertmanager.yml'}",
            f"--storage.path={engine.node_paths(node).root / 'alertmanager'}",
            f"--web.listen-address={n.address}:{int(a['alertmanager_port'])}", "--cluster.listen-address="]


def daemon_argv(engine, node: str, what: str) -> list[str] | None:
    """How ``start_daemon`` (re)starts this addon's daemons; None for anything else."""
    m = settings(engine.spec)
    if what == EXPORTER and node in m.get("nodes", []):
        return exporter_argv(engine, node)
    if what == PROMETHEUS and node == m.get("prometheus_node"):
        return prometheus_argv(engine)
    if what == ALERTMANAGER and alerting(engine.spec) and node == m.get("alertmanager_node"):
        return alertmanager_argv(engine)
    if what == WEBHOOK and alerting(engine.spec) and node == m.get("alertmanager_node"):
        return webhook_argv(engine)
    return None


def prometheus(engine) -> Prometheus:
    """The API of this cluster's Prometheus, asked from its own node."""
    m = settings(engine.spec)
    n = engine.node_spec_of(m["prometheus_node"])
    return Prometheus(engine.cluster.node(n.name), f"http://{n.address}:{int(m['prometheus_port'])}", timeout=5.0)


def _watched(engine) -> list:
    """This addon's daemons, the newest of each node and kind (a fault's restart leaves the old
    one, exited, in the engine's list)."""
    newest = {(d.node, d.what): d for d in engine.daemons if d.what in (PROMETHEUS, EXPORTER, ALERTMANAGER, WEBHOOK)}
    return list(newest.values())


def wait_scraped(engine, nodes: list[str], timeout: float = READY_TIMEOUT_S) -> None:
    """Until Prometheus has scraped each of ``nodes`` once (and lists no target of another)."""
    api = prometheus(engine)
    port = int(settings(engine.spec)["node_exporter_port"])
    want = {f"{n}:{port}" for n in nodes}

    def scraped() -> bool:
        try:
            targets = api.targets()
        except MonitoringError:
            return False
        return {t.address for t in targets} == want and all(t.last_scrape is not None for t in targets)

    engine.wait_until(scraped, f"Prometheus on {api.node.name} to scrape {', '.join(sorted(want)) or 'no target'}",
                      timeout, _watched(engine))


def alertmanager(engine) -> Alertmanager:
    m = settings(engine.spec)
    n = engine.node_spec_of(m["alertmanager_node"])
    return Alertmanager(engine.cluster.node(m["prometheus_node"]),
                        f"http://{n.address}:{int(alerting(engine.spec)['alertmanager_port'])}", timeout=5.0)


def wait_watchdog(engine, timeout: float = READY_TIMEOUT_S) -> None:
    """Until the watchdog alert is active in Alertmanager (no watchdog configured: at once)."""
    name = (alerting(engine.spec) or {}).get("watchdog_alert")
    if not name:
        return
    api = alertmanager(engine)

    def received() -> bool:
        try:
            return any(a.name == name and a.state == "active" for a in api.alerts())
        except MonitoringError:
            return False

    engine.wait_until(received, f"alert {name} to reach Alertmanager at {api.url}", timeout, _watched(engine))
    log = webhook_log(engine)
    engine.wait_until(lambda: log.exists() and f'"alertname":"{name}"' in log.read_text(errors="replace"),
                      f"Alertmanager to notify the webhook ({log}) of {name}", timeout, _watched(engine))


def start(engine, progress) -> None:
    """Launch the exporters, Prometheus (and Alertmanager) early: Prometheus applies its targets
    about 5 s after it starts, a wait that then overlaps Slurm's start-up and the other addons."""
    wanted = {**BINARIES, **(ALERTING_BINARIES if alerting(engine.spec) else {})}
    missing = sorted({pkg for b, pkg in wanted.items() if shutil.which(b) is None})
    if missing:
        raise ProvisioningError(f"monitoring needs: apt-get install -y {' '.join(missing)}")
    m = settings(engine.spec)
    path = config_path(engine)
    path.parent.mkdir(parents=True, exist_ok=True)
    if alerting(engine.spec):
        rules_path(engine).write_text(rules_yml(engine.spec))
        (path.parent / "alertmanager.yml").write_text(alertmanager_yml(engine))
        (path.parent / "webhook.py").write_text(WEBHOOK_PY)
    path.write_text(prometheus_yml(engine.spec, rules=str(rules_path(engine))))
    for n in m["nodes"]:
        engine.launch_daemon(engine.node_spec_of(n), EXPORTER, exporter_argv(engine, n), [])
    if alerting(engine.spec):
        am_node = engine.node_spec_of(m["alertmanager_node"])
        engine.launch_daemon(am_node, WEBHOOK, webhook_argv(engine), [])
        engine.launch_daemon(am_node, ALERTMANAGER, alertmanager_argv(engine), [])
    progress(NAME, m["prometheus_node"], f"prometheus, {len(m['nodes'])} node exporters"
             + (", alertmanager" if alerting(engine.spec) else ""))
    engine.launch_daemon(engine.node_spec_of(m["prometheus_node"]), PROMETHEUS, prometheus_argv(engine), [])
    engine.record_launched()


def listening_ports(engine) -> list[tuple[str, int]]:
    m = settings(engine.spec)
    ports = [(n, int(m["node_exporter_port"])) for n in m["nodes"]] + [(m["prometheus_node"], int(m["prometheus_port"]))]
    if alerting(engine.spec):
        ports += [(m["alertmanager_node"], int(alerting(engine.spec)["alertmanager_port"])),
                  (m["alertmanager_node"], WEBHOOK_PORT)]
    return ports


def up(engine, progress) -> None:
    """Wait until every daemon listens, every node has been scraped once and the watchdog
    alert has reached Alertmanager."""
    t0 = time.monotonic()
    ports = listening_ports(engine)
    engine.wait_until(lambda: all(daemons.listening(engine.anchor_pid(n), p) for n, p in ports),
                      "the node exporters and Prometheus to listen", READY_TIMEOUT_S, _watched(engine))
    wait_scraped(engine, settings(engine.spec)["nodes"])
    wait_watchdog(engine)
    engine.timings["monitoring_scraped"] = round(time.monotonic() - t0, 4)


def down(engine) -> list[str]:
    """Stop Prometheus first (no scrape errors from exporters going away), then the exporters."""
    m = settings(engine.spec)
    am = [(m["alertmanager_node"], ALERTMANAGER), (m["alertmanager_node"], WEBHOOK)] if alerting(engine.spec) else []
    return stop_daemons(engine, [(m["prometheus_node"], PROMETHEUS), *am, *((n, EXPORTER) for n in m["nodes"])])


class _Addon:
    name = NAME
    applies = staticmethod(applies)
    start = staticmethod(start)
    up = staticmethod(up)
    down = staticmethod(down)
    daemon_argv = staticmethod(daemon_argv)


ADDON = _Addon()
