"""The local provider's monitoring addon writes configurations Prometheus's own checker
(``promtool``) and Alertmanager's (``amtool``, where installed) accept, for job names and
alert names that need quoting too."""

from __future__ import annotations

import shutil
import subprocess
from types import SimpleNamespace

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_hpcvalidate.providers.local.addons import monitoring as addon

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt: prometheus)")


def spec(job=None, watchdog="Watchdog", retention=None):
    return SimpleNamespace(extra={"monitoring": {
        "scrape_interval_s": 1.0, "node_exporter_port": 9100, "nodes": ["ctl", "c1", "c2"], "job": job,
        "prometheus_node": "ctl", "alertmanager_node": "ctl", "retention_days_min": retention,
        "alerting": {"alertmanager_port": 9093, "watchdog_alert": watchdog}}})


def check(tmp_path, s) -> subprocess.CompletedProcess:
    rules = tmp_path / "rules.yml"
    rules.write_text(addon.rules_yml(s))
    conf = tmp_path / "prometheus.yml"
    conf.write_text(addon.prometheus_yml(s, rules=str(rules)))
    return subprocess.run(["promtool", "check", "config", str(conf)], capture_output=True, text=True)


@needs_promtool
def test_generated_configuration_and_rules_pass_promtool(tmp_path):
    r = check(tmp_path, spec())
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 2 rules found" in r.stdout
    doc = yaml.safe_load(addon.prometheus_yml(spec(), rules="/r.yml"))
    assert doc["scrape_configs"][0]["static_configs"][0]["targets"] == ["ctl:9100", "c1:9100", "c2:9100"]
    assert doc["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["ctl:9093"]


@needs_promtool
@settings(max_examples=15, deadline=None)
@given(st.text(st.characters(codec="ascii", categories=("L", "N", "P", "S", "Zs")), min_size=1, max_size=20)
       .filter(lambda t: t.strip() == t))
def test_any_job_name_is_written_so_that_promtool_accepts_it(tmp_path_factory, job):
    r = check(tmp_path_factory.mktemp("job"), spec(job=job))
    assert r.returncode == 0, f"job {job!r}: {r.stdout}{r.stderr}"


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool not installed (apt: prometheus-alertmanager)")
@pytest.mark.parametrize("receiver", [addon.WEBHOOK_RECEIVER, "null"])
def test_generated_alertmanager_configuration_passes_amtool(tmp_path, receiver):
    engine = SimpleNamespace(spec=spec(), node_spec_of=lambda name: SimpleNamespace(name=name, address="10.0.0.10"))
    conf = tmp_path / "alertmanager.yml"
    conf.write_text(addon.alertmanager_yml(engine, receiver))
    r = subprocess.run(["amtool", "check-config", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0 and " - 2 receivers" in r.stdout, r.stdout + r.stderr
    doc = yaml.safe_load(conf.read_text())
    assert doc["route"]["receiver"] == receiver
    assert doc["receivers"][0]["webhook_configs"][0]["url"] == f"http://10.0.0.10:{addon.WEBHOOK_PORT}/"


def test_retention_follows_what_the_config_asks_for():
    assert addon.retention_days(spec()) == 1
    assert addon.retention_days(spec(retention=30)) == 30
    assert addon.retention_days(spec(retention=0.5)) == 1
    assert addon.retention_days(spec(retention=7.2)) == 8
