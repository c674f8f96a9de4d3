"""What the layer-5 monitoring checks share: the config's ``monitoring`` section and the
APIs of its Prometheus and Alertmanager, asked from the Prometheus node (curl there)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from pytest_hpcvalidate.probes import monitoring as probe


@pytest.fixture(scope="module")
def settings(hpc_config):
    return hpc_config.monitoring


@pytest.fixture(scope="module")
def prometheus(cluster, hpc_config, settings) -> probe.Prometheus:
    """Prometheus's API: on the Prometheus node, or at ``prometheus_url`` asked from that node."""
    node = cluster.node(hpc_config.prometheus_node())
    return probe.Prometheus(node, settings.prometheus_url or f"http://{node.address}:{settings.prometheus_port}")


@pytest.fixture(scope="module")
def alertmanager_url(cluster, hpc_config, settings) -> tuple[str, set[str], int]:
    """(Alertmanager's URL, the host names it may go by, its port)."""
    a = settings.alerting
    if a.alertmanager_url:
        parts = urlsplit(a.alertmanager_url)
        return a.alertmanager_url, {parts.hostname or ""}, parts.port or (443 if parts.scheme == "https" else 80)
    node = cluster.node(hpc_config.alertmanager_node())
    return f"http://{node.address}:{a.alertmanager_port}", {node.name, node.address}, a.alertmanager_port


@pytest.fixture(scope="module")
def alertmanager(prometheus, alertmanager_url) -> probe.Alertmanager:
    """Alertmanager's API, asked from the Prometheus node (the path Prometheus's alerts take)."""
    return probe.Alertmanager(prometheus.node, alertmanager_url[0])
