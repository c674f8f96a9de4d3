"""Monitoring faults on a local cluster with a ``monitoring`` section: a node exporter stopped
or started without one of its collectors, Prometheus stopped, a node dropped from Prometheus's
scrape config, a node's target name reaching another host. Each waits until Prometheus shows
the fault (or, on repair, has scraped every node again)."""

from __future__ import annotations

import contextlib
import os
import signal
import time

from ..probes.monitoring import MonitoringError
from ..providers.local import daemons
from ..providers.local.addons import monitoring as addon
from . import require_local
from ._wait import until
from .network import wrong_hosts_entry


def _settings(engine) -> dict:
    require_local(engine)
    m = addon.settings(engine.spec)
    if not m:
        raise RuntimeError(f"cluster {engine.spec.cluster!r} has no monitoring section: no monitoring fault applies")
    return m


def _target_health(engine, name: str) -> str | None:
    port = int(addon.settings(engine.spec)["node_exporter_port"])
    try:
        targets = addon.prometheus(engine).targets()
    except MonitoringError:
        return None
    return next((t.health for t in targets if t.address == f"{name}:{port}"), "absent")


def _listening(engine, name: str, port: int) -> bool:
    return daemons.listening(engine.anchor_pid(name), port)


def _restart_exporter(engine, name: str, extra: list[str]) -> None:
    port = int(addon.settings(engine.spec)["node_exporter_port"])
    engine.stop_daemon(name, addon.EXPORTER)
    engine.launch_daemon(engine.node_spec_of(name), addon.EXPORTER, addon.exporter_argv(engine, name, extra), [])
    engine.record_launched()
    until(lambda: _listening(engine, name, port), f"the node exporter on {name} to listen again", 15)


def _healthy_again(engine) -> None:
    addon.wait_scraped(engine, addon.settings(engine.spec)["nodes"])
    until(lambda: all(_target_health(engine, n) == "up" for n in addon.settings(engine.spec)["nodes"]),
          "Prometheus to see every node exporter up again", 20)


@contextlib.contextmanager
def exporter_stopped(engine, name: str):
    """The node exporter of ``name`` is stopped, and Prometheus has seen its target go down."""
    _settings(engine)
    engine.stop_daemon(name, addon.EXPORTER)
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
def prometheus_stopped(engine):
    """Prometheus is not running (its port closed)."""
    m = _settings(engine)
    node, port = m["prometheus_node"], int(m["prometheus_port"])
    engine.stop_daemon(node, addon.PROMETHEUS)
    try:
        until(lambda: not _listening(engine, node, port), f"Prometheus on {node} to stop listening", 10)
        yield
    finally:
        engine.start_daemon(node, addon.PROMETHEUS)
        _healthy_again(engine)


def _reload(engine) -> None:
    m = addon.settings(engine.spec)
    for pid in engine.daemon_pids(m["prometheus_node"], addon.PROMETHEUS):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGHUP)


@contextlib.contextmanager
def scrape_target_dropped(engine, name: str):
    """Prometheus's scrape config lists every monitored node but ``name`` (reloaded with SIGHUP;
    Prometheus applies the new targets a few seconds later)."""
    m = _settings(engine)
    path = addon.config_path(engine)
    original = path.read_text()
    path.write_text(addon.prometheus_yml(engine.spec, [n for n in m["nodes"] if n != name]))
    _reload(engine)
    try:
        until(lambda: _target_health(engine, name) == "absent", f"Prometheus to drop its target {name}", 30)
        yield
    finally:
        path.write_text(original)
        _reload(engine)
        _healthy_again(engine)


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
