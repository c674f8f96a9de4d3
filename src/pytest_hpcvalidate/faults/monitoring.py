"""Monitoring faults on a local cluster with a ``monitoring`` section: a node exporter stopped,
started without one of its collectors or reading a textfile that does not parse; Prometheus
stopped, or its data directory full; a node dropped from Prometheus's scrape config; a node's target name reaching another
host; with ``monitoring.alerting``:
Alertmanager stopped, a rule that fails to evaluate, the node-down alert removed, Prometheus
sending to no Alertmanager, the watchdog alert silenced. Each waits until Prometheus or Alertmanager shows the fault (or, on
repair, that every node is scraped and the watchdog active again)."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import time

import yaml

from ..probes.monitoring import MonitoringError, http_get, parse_metrics
from ..providers.local import daemons, procs
from ..providers.local.addons import monitoring as addon
from ..providers.local.addons.glusterfs import node_pids
from . import mounted_on_node, require_local
from ._wait import until
from .network import wrong_hosts_entry


def _settings(engine) -> dict:
    require_local(engine)
    m = addon.settings(engine.spec)
    if not m:
        raise RuntimeError(f"cluster {engine.spec.cluster!r} has no monitoring section: no monitoring fault applies")
    return m


def _find_target(engine, name: str):
    """(whether Prometheus answered, its target for ``name``'s exporter or None)."""
    port = int(addon.settings(engine.spec)["node_exporter_port"])
    try:
        targets = addon.prometheus(engine).targets()
    except MonitoringError:
        return False, None
    return True, next((t for t in targets if t.address == f"{name}:{port}"), None)


def _target_health(engine, name: str) -> str | None:
    """up / down / unknown, "absent" without a target, None when Prometheus does not answer."""
    answered, target = _find_target(engine, name)
    if not answered:
        return None
    return target.health if target else "absent"


def _scraped_up_since(engine, name: str, moment: float) -> bool:
    """Prometheus's last scrape of ``name``'s exporter came after ``moment`` and succeeded."""
    _, target = _find_target(engine, name)
    return target is not None and target.health == "up" and (target.last_scrape or 0) > moment


def _listening(engine, name: str, port: int) -> bool:
    return daemons.listening(engine.anchor_pid(name), port)


def _stop_exporter(engine, name: str) -> None:
    """Stop ``name``'s exporter and wait until its port is closed (whatever still listens there
    in the node, recorded or not, is stopped too)."""
    port = int(addon.settings(engine.spec)["node_exporter_port"])
    engine.stop_daemon(name, addon.EXPORTER)
    if _listening(engine, name, port):
        procs.kill(node_pids(engine, name, "prometheus-node"), signal.SIGKILL)
    until(lambda: not _listening(engine, name, port), f"port {port} on {name} to close", 10)


def _restart_exporter(engine, name: str, extra: list[str]) -> None:
    """Restart ``name``'s exporter (with ``extra`` flags) and wait until Prometheus has scraped
    the new one: checks run right after see the restarted exporter, not the gap."""
    port = int(addon.settings(engine.spec)["node_exporter_port"])
    _stop_exporter(engine, name)
    moment = time.time()
    engine.launch_daemon(engine.node_spec_of(name), addon.EXPORTER, addon.exporter_argv(engine, name, extra), [])
    engine.record_launched()
    until(lambda: _listening(engine, name, port), f"the node exporter on {name} to listen again", 15)
    until(lambda: _scraped_up_since(engine, name, moment), f"Prometheus to scrape the restarted exporter on {name}", 20)


def _healthy_again(engine) -> None:
    """Every node scraped and up, and the watchdog alert (where there is one) active again."""
    addon.wait_scraped(engine, addon.settings(engine.spec)["nodes"])
    until(lambda: all(_target_health(engine, n) == "up" for n in addon.settings(engine.spec)["nodes"]),
          "Prometheus to see every node exporter up again", 20)
    if (addon.alerting(engine.spec) or {}).get("watchdog_alert"):
        until(lambda: _watchdog_state(engine) == "active", "the watchdog alert to be active in Alertmanager again", 45)


@contextlib.contextmanager
def exporter_stopped(engine, name: str):
    """The node exporter of ``name`` is stopped, and Prometheus has seen its target go down."""
    _settings(engine)
    _stop_exporter(engine, name)
    try:
        until(lambda: _target_health(engine, name) == "down", f"Prometheus to see {name}'s exporter down", 20)
        yield
    finally:
        engine.start_daemon(name, addon.EXPORTER)
        _healthy_again(engine)


@contextlib.contextmanager
def exporter_without_collector(engine, name: str, collector: str):
    """The node exporter of ``name`` runs with ``--no-collector.<collector>``."""
    _settings(engine)
    _restart_exporter(engine, name, [f"--no-collector.{collector}"])
    try:
        yield
    finally:
        _restart_exporter(engine, name, [])
        _healthy_again(engine)


@contextlib.contextmanager
def exporter_with_unreadable_textfile(engine, name: str):
    """The node exporter of ``name`` reads a textfile directory holding a ``.prom`` file that
    does not parse (a site script's broken output: its metrics are silently missing)."""
    _settings(engine)
    folder = engine.work_dir / "faults" / f"textfile-{name}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "site.prom").write_text('site_gpu_health{gpu="0"} is fine\n')
    _restart_exporter(engine, name, [f"--collector.textfile.directory={folder}"])
    try:
        yield
    finally:
        _restart_exporter(engine, name, [])
        shutil.rmtree(folder, ignore_errors=True)
        _healthy_again(engine)


@contextlib.contextmanager
def tsdb_full(engine):
    """Prometheus's data directory is, for a moment, a 1 MiB tmpfs of its own in the Prometheus
    node (Prometheus keeps writing to the directory it has open beneath): a full disk as ``df``
    there sees it."""
    m = _settings(engine)
    node = engine.cluster.node(m["prometheus_node"])
    path = str(engine.node_paths(m["prometheus_node"]).root / "prometheus")
    with mounted_on_node(node, path, "-t", "tmpfs", "-o", "size=1m", "hpcv-fault-full"):
        yield path


@contextlib.contextmanager
def _daemon_stopped(engine, node: str, what: str, port: int):
    """``what`` on ``node`` stopped and its port closed; on the way out started again, listening,
    and every node scraped (and the watchdog active) again."""
    engine.stop_daemon(node, what)
    try:
        until(lambda: not _listening(engine, node, port), f"{what} on {node} to stop listening", 10)
        yield
    finally:
        engine.start_daemon(node, what)
        until(lambda: _listening(engine, node, port), f"{what} on {node} to listen again", 15)
        _healthy_again(engine)


def prometheus_stopped(engine):
    """Prometheus is not running (its port closed)."""
    m = _settings(engine)
    return _daemon_stopped(engine, m["prometheus_node"], addon.PROMETHEUS, int(m["prometheus_port"]))


def _sends_to_alertmanager(engine) -> bool:
    try:
        return bool(addon.prometheus(engine).alertmanagers())
    except MonitoringError:
        return False


def _reload(engine, settle: bool = True) -> None:
    """SIGHUP to Prometheus: it reads its configuration and rules again. It then sends alerts
    nowhere until it has discovered its Alertmanager again (~5 s): ``settle`` waits for that,
    and for the watchdog alert to be active in Alertmanager."""
    m = addon.settings(engine.spec)

    def sighup() -> None:
        for pid in engine.daemon_pids(m["prometheus_node"], addon.PROMETHEUS):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)

    _reloaded_by(addon.prometheus(engine), PROMETHEUS_RELOADED, "Prometheus", sighup)
    if settle and addon.alerting(engine.spec):
        until(lambda: _sends_to_alertmanager(engine), "Prometheus to discover its Alertmanager again", 20)
        if addon.alerting(engine.spec).get("watchdog_alert"):  # and to have sent to it since
            until(lambda: _watchdog_state(engine) == "active", "the watchdog alert to be active again", 45)


#: the metric each program keeps of when it last loaded its configuration
PROMETHEUS_RELOADED = "prometheus_config_last_reload_success_timestamp_seconds"
ALERTMANAGER_RELOADED = "alertmanager_config_last_reload_success_timestamp_seconds"


def _last_reload(api, metric: str) -> float | None:
    """When ``api``'s program last loaded its configuration, by its own ``metric``; None if it
    cannot say."""
    reply = http_get(api.node, api.url + "/metrics", 5.0)
    if not reply.ok:
        return None
    try:
        samples = parse_metrics(reply.body).get(metric) or []
    except MonitoringError:
        return None
    return samples[0][1] if samples else None


def _reloaded_by(api, metric: str, what: str, trigger) -> None:
    """``trigger()`` makes ``api``'s program read its configuration again; returns once its
    reload ``metric`` has moved (the metric counts whole seconds: never within the second of
    the last reload)."""
    before = _last_reload(api, metric)
    if before is not None and time.time() - before < 1.1:
        time.sleep(1.1 - (time.time() - before))
    trigger()
    until(lambda: _last_reload(api, metric) not in (None, before), f"{what} to reload its configuration", 20)


@contextlib.contextmanager
def _reloaded_with(engine, path, text: str, settle: bool = True):
    """``path`` (Prometheus's configuration or rules) holds ``text`` and Prometheus has reloaded
    it; on the way out the original is back, reloaded, and every node scraped again."""
    original = path.read_text()
    path.write_text(text)
    _reload(engine, settle)
    try:
        yield
    finally:
        path.write_text(original)
        _reload(engine)
        _healthy_again(engine)


@contextlib.contextmanager
def scrape_target_dropped(engine, name: str):
    """Prometheus's scrape config lists every monitored node but ``name`` (reloaded with SIGHUP;
    Prometheus applies the new targets a few seconds later)."""
    m = _settings(engine)
    text = addon.prometheus_yml(engine.spec, [n for n in m["nodes"] if n != name], str(addon.rules_path(engine)))
    with _reloaded_with(engine, addon.config_path(engine), text):
        until(lambda: _target_health(engine, name) == "absent", f"Prometheus to drop its target {name}", 30)
        yield


@contextlib.contextmanager
def target_reaches_other_host(engine, name: str, other: str):
    """``name``'s scrape target reaches ``other``'s exporter: the cluster's hosts file maps
    ``name`` to ``other``'s address; Prometheus keeps ``other``'s series under ``name``'s
    instance once it has connected through the new name."""
    m = _settings(engine)
    instance = f"{name}:{int(m['node_exporter_port'])}"
    api = addon.prometheus(engine)

    def nodenames() -> set[str]:
        try:
            return {labels.get("nodename", "") for labels, _, _ in api.query(f'node_uname_info{{instance="{instance}"}}')}
        except MonitoringError:
            return set()

    def reconnect(through: str, until_from: str) -> None:
        """Prometheus keeps its connection to an exporter open across scrapes, and its resolver
        reads the hosts file again only after a few seconds: restart the exporter it is connected
        to until it has connected through the current hosts file."""
        deadline = time.monotonic() + 40
        while nodenames() != {until_from}:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Prometheus does not keep {until_from}'s series as {instance} within 40s")
            _restart_exporter(engine, through, [])
            time.sleep(2.0)

    try:
        with wrong_hosts_entry(engine, name, engine.node_spec_of(other).address):
            reconnect(name, other)
            yield
    finally:
        reconnect(other, name)
        _healthy_again(engine)


def _alerting(engine) -> dict:
    m = _settings(engine)
    if not m.get("alerting"):
        raise RuntimeError(f"cluster {engine.spec.cluster!r} has no monitoring.alerting section")
    return m


def _watchdog_state(engine) -> str:
    """The watchdog alert's state in Alertmanager: active, suppressed, ... or absent."""
    name = addon.alerting(engine.spec)["watchdog_alert"]
    try:
        alerts = addon.alertmanager(engine).alerts()
    except MonitoringError:
        return "unreachable"
    return next((a.state for a in alerts if a.name == name), "absent")


def alertmanager_stopped(engine):
    """Alertmanager is not running (its port closed)."""
    m = _alerting(engine)
    return _daemon_stopped(engine, m["alertmanager_node"], addon.ALERTMANAGER, int(m["alerting"]["alertmanager_port"]))


#: a recording rule that loads but fails at every evaluation (two series per instance on the left)
BROKEN_GROUP = {"name": "hpcv-broken",
                "rules": [{"record": "hpcv:cpu_per_load", "expr": "node_cpu_seconds_total / on(instance) node_load1"}]}


def _rule_health(engine, group: str) -> set[str]:
    try:
        return {r.health for r in addon.prometheus(engine).rules() if r.group == group}
    except MonitoringError:
        return set()


@contextlib.contextmanager
def broken_rule_added(engine):
    """Prometheus's rules file gains a group whose rule fails at every evaluation (reloaded)."""
    _alerting(engine)
    path = addon.rules_path(engine)
    doc = yaml.safe_load(path.read_text())
    doc["groups"].append(BROKEN_GROUP)
    with _reloaded_with(engine, path, yaml.safe_dump(doc, sort_keys=False)):
        until(lambda: _rule_health(engine, "hpcv-broken") == {"err"}, "Prometheus to evaluate the broken rule", 30)
        yield


@contextlib.contextmanager
def node_down_alert_removed(engine):
    """Prometheus's rules lose the alert on ``up`` (reloaded): a node going down alerts no one."""
    _alerting(engine)
    path = addon.rules_path(engine)
    doc = yaml.safe_load(path.read_text())
    for group in doc["groups"]:
        group["rules"] = [r for r in group["rules"] if r.get("alert") != "NodeExporterDown"]
    with _reloaded_with(engine, path, yaml.safe_dump(doc, sort_keys=False)):
        yield


@contextlib.contextmanager
def prometheus_without_alertmanager(engine):
    """Prometheus's configuration loses its alerting section (reloaded): it evaluates its
    rules and sends their alerts nowhere; Alertmanager's copy of the watchdog expires."""
    _alerting(engine)
    path = addon.config_path(engine)
    doc = yaml.safe_load(path.read_text())
    doc.pop("alerting")
    with _reloaded_with(engine, path, yaml.safe_dump(doc, sort_keys=False), settle=False):
        until(lambda: _watchdog_resolved(engine), "the watchdog alert to expire in Alertmanager", 20)
        yield


def _post_json(api, path: str, doc) -> str:
    """POST ``doc`` as JSON to ``api``'s ``path`` (from its asking node); the reply's body."""
    return api.node.run(f"curl -sS -m 5 -X POST -H 'Content-Type: application/json' -d {shlex.quote(json.dumps(doc))} "
                        f"{shlex.quote(api.url + path)}", timeout=15).check().stdout


def _watchdog_resolved(engine) -> bool:
    """The watchdog is gone from Alertmanager; while it is not, its copy is posted resolved.
    Alertmanager would let it lapse by itself 4 resend delays (40 s) after Prometheus last
    sent it: the fault skips that wait."""
    name = addon.alerting(engine.spec)["watchdog_alert"]
    api = addon.alertmanager(engine)
    held = [a for a in api.alerts() if a.name == name]
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for a in held:
        _post_json(api, "/api/v2/alerts", [{"labels": a.labels, "startsAt": "2000-01-01T00:00:00Z", "endsAt": now}])
    return not held


@contextlib.contextmanager
def watchdog_silenced(engine):
    """A silence in Alertmanager matches the watchdog alert (as an operator silencing noise
    makes one): Alertmanager holds it suppressed and sends it to no receiver."""
    m = _alerting(engine)
    name = m["alerting"]["watchdog_alert"]
    api = addon.alertmanager(engine)
    silence = json.loads(_post_json(api, "/api/v2/silences", {
        "matchers": [{"name": "alertname", "value": name, "isRegex": False}],
        "startsAt": "2000-01-01T00:00:00Z", "endsAt": "2999-01-01T00:00:00Z",
        "createdBy": "hpcvalidate fault injection", "comment": "fault: watchdog silenced"}))["silenceID"]
    try:
        until(lambda: _watchdog_state(engine) == "suppressed", "Alertmanager to silence the watchdog alert", 20)
        yield silence
    finally:
        api.node.run(f"curl -sS -m 5 -X DELETE {shlex.quote(api.url + '/api/v2/silence/' + silence)}", timeout=15).check()
        until(lambda: _watchdog_state(engine) == "active", "the watchdog alert to be active again", 20)


@contextlib.contextmanager
def _alertmanager_reloaded_with(engine, **routing):
    """Alertmanager runs ``addon.alertmanager_yml(engine, **routing)`` while inside (POST
    /-/reload, until its own reload-timestamp metric moves), the provider's routing afterwards."""
    _alerting(engine)
    api = addon.alertmanager(engine)
    path = engine.work_dir / "monitoring" / "alertmanager.yml"

    def load(text: str) -> None:
        path.write_text(text)
        _reloaded_by(api, ALERTMANAGER_RELOADED, "Alertmanager", lambda: api.node.run(
            f"curl -sS -m 5 -X POST {shlex.quote(api.url + '/-/reload')}", timeout=15).check())

    load(addon.alertmanager_yml(engine, **routing))
    try:
        yield
    finally:
        load(addon.alertmanager_yml(engine))


def alertmanager_routes_to_null(engine):
    """Alertmanager's route sends every alert to ``null``, a receiver without integrations (the
    stock way to quiet the watchdog): it holds every alert, active, and tells nobody."""
    return _alertmanager_reloaded_with(engine, receiver="null")


def node_down_alert_routed_to_null(engine, alert: str = "NodeExporterDown"):
    """A route of its own sends the alert on a node going down to ``null``; everything else
    (the watchdog too) still reaches the webhook."""
    return _alertmanager_reloaded_with(engine, quiet=(alert,))
