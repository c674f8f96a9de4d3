"""What the layer-5 monitoring checks share: the config's ``monitoring`` section and the
APIs of its Prometheus and Alertmanager, asked from the Prometheus node (curl there)."""

from __future__ import annotations

import pytest

from pytest_hpcvalidate.probes import monitoring as probe


@pytest.fixture(scope="module")
def settings(hpc_config):
    return hpc_config.monitoring


@pytest.fixture(scope="module")
def prometheus(cluster, hpc_config, settings) -> probe.Prometheus:
    node = cluster.node(hpc_config.prometheus_node())
    return probe.Prometheus(node, f"http://{node.address}:{settings.prometheus_port}")


@pytest.fixture(scope="module")
def alertmanager(cluster, hpc_config, settings, prometheus) -> probe.Alertmanager:
    """Alertmanager's API, asked from the Prometheus node (the path Prometheus's alerts take)."""
    node = cluster.node(hpc_config.alertmanager_node())
    return probe.Alertmanager(prometheus.node, f"http://{node.address}:{settings.alerting.alertmanager_port}")
