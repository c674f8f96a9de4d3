"""Layer 5, monitoring: Prometheus, the node exporters and Alertmanager (``monitoring``)."""

from __future__ import annotations

import pytest

from pytest_hpcvalidate.probes.monitoring import MonitoringError


def or_fail(what: str, call):
    """``call()``, or the check fails with ``what`` and why Prometheus/Alertmanager could not answer."""
    try:
        return call()
    except MonitoringError as exc:
        pytest.fail(f"{what}: {exc}")
