"""Prometheus and the node exporter on a local cluster (the config's ``monitoring`` section).

- one ``prometheus-node-exporter`` per monitored node (``monitoring.nodes``), listening on the
  node's own address; its systemd collector is off (the nodes run no systemd: it would fail
  every scrape and the collectors check with it);
- one ``prometheus`` on the Prometheus node (default: the controller), its configuration and
  TSDB under the work directory, scraping every exporter by node name (``c1:9100``, so the
  instance label names the node) every ``scrape_interval_s`` in one job (``monitoring.job``,
  default ``node``); ``--web.enable-lifecycle`` so a configuration can be reloaded.

All of them are recorded daemons of their node, launched like slurmd (foreground, the node's
namespaces and cgroups): teardown and ``cleanup`` find them with the rest. ``up`` returns
once every target has been scraped once (Prometheus applies new targets about 5 s after it
starts), so the checks judge a steady state, not a start-up.
"""

from __future__ import annotations

import shutil
import time

from ....probes.monitoring import MonitoringError, Prometheus
from ...base import ProvisioningError
from .. import daemons
from . import stop_daemons

NAME = "monitoring"
#: program -> the Debian package that ships it
BINARIES = {"prometheus": "prometheus", "prometheus-node-exporter": "prometheus-node-exporter", "curl": "curl"}
EXPORTER = "node-exporter"
PROMETHEUS = "prometheus"
READY_TIMEOUT_S = 40.0


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


def prometheus_yml(spec, nodes: list[str] | None = None) -> str:
    """Prometheus's configuration: one static job over ``nodes`` (default: every monitored node)."""
    m = settings(spec)
    interval = float(m["scrape_interval_s"])
    port = int(m["node_exporter_port"])
    targets = ", ".join(f"'{n}:{port}'" for n in (m["nodes"] if nodes is None else nodes))
    return (f"# written by pytest-hpcvalidate (local provider)\n"
            f"global:\n  scrape_interval: {interval:g}s\n  scrape_timeout: {min(interval, 10.0):g}s\n"
            f"scrape_configs:\n  - job_name: '{job_name(spec)}'\n    static_configs:\n"
            f"      - targets: [{targets}]\n")


def exporter_argv(engine, node: str, extra: list[str] | None = None) -> list[str]:
    n = engine.node_spec_of(node)
    return ["prometheus-node-exporter", f"--web.listen-address={n.address}:{int(settings(engine.spec)['node_exporter_port'])}",
            "--no-collector.systemd", *(extra or [])]


def prometheus_argv(engine) -> list[str]:
    m = settings(engine.spec)
    n = engine.node_spec_of(m["prometheus_node"])
    data = engine.node_paths(n.name).root / "prometheus"
    return ["prometheus", f"--config.file={config_path(engine)}", f"--storage.tsdb.path={data}",
            f"--web.listen-address={n.address}:{int(m['prometheus_port'])}", "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=1d"]


def daemon_argv(engine, node: str, what: str) -> list[str] | None:
    """How ``start_daemon`` (re)starts this addon's daemons; None for anything else."""
    m = settings(engine.spec)
    if what == EXPORTER and node in m.get("nodes", []):
        return exporter_argv(engine, node)
    if what == PROMETHEUS and node == m.get("prometheus_node"):
        return prometheus_argv(engine)
    return None


def prometheus(engine) -> Prometheus:
    """The API of this cluster's Prometheus, asked from its own node."""
    m = settings(engine.spec)
    n = engine.node_spec_of(m["prometheus_node"])
    return Prometheus(engine.cluster.node(n.name), f"http://{n.address}:{int(m['prometheus_port'])}", timeout=5.0)


def _watched(engine) -> list:
    """This addon's daemons, the newest of each node and kind (a fault's restart leaves the old
    one, exited, in the engine's list)."""
    newest = {(d.node, d.what): d for d in engine.daemons if d.what in (PROMETHEUS, EXPORTER)}
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


def start(engine, progress) -> None:
    """Launch the exporters and Prometheus early: Prometheus applies its targets about 5 s
    after it starts, a wait that then overlaps Slurm's start-up and the other addons."""
    missing = sorted({pkg for b, pkg in BINARIES.items() if shutil.which(b) is None})
    if missing:
        raise ProvisioningError(f"monitoring needs: apt-get install -y {' '.join(missing)}")
    m = settings(engine.spec)
    path = config_path(engine)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(prometheus_yml(engine.spec))
    for n in m["nodes"]:
        engine.launch_daemon(engine.node_spec_of(n), EXPORTER, exporter_argv(engine, n), [])
    progress(NAME, m["prometheus_node"], f"prometheus, {len(m['nodes'])} node exporters")
    engine.launch_daemon(engine.node_spec_of(m["prometheus_node"]), PROMETHEUS, prometheus_argv(engine), [])
    engine.record_launched()


def up(engine, progress) -> None:
    """Wait until the exporters and Prometheus listen and every node has been scraped once."""
    t0 = time.monotonic()
    m = settings(engine.spec)
    ports = [(n, int(m["node_exporter_port"])) for n in m["nodes"]] + [(m["prometheus_node"], int(m["prometheus_port"]))]
    engine.wait_until(lambda: all(daemons.listening(engine.anchor_pid(n), p) for n, p in ports),
                      "the node exporters and Prometheus to listen", READY_TIMEOUT_S, _watched(engine))
    wait_scraped(engine, m["nodes"])
    engine.timings["monitoring_scraped"] = round(time.monotonic() - t0, 4)


def down(engine) -> list[str]:
    """Stop Prometheus first (no scrape errors from exporters going away), then the exporters."""
    m = settings(engine.spec)
    return stop_daemons(engine, [(m["prometheus_node"], PROMETHEUS), *((n, EXPORTER) for n in m["nodes"])])


class _Addon:
    name = NAME
    applies = staticmethod(applies)
    start = staticmethod(start)
    up = staticmethod(up)
    down = staticmethod(down)
    daemon_argv = staticmethod(daemon_argv)


ADDON = _Addon()
