"""Job accounting on a local cluster (``slurm.accounting: true``): MariaDB + slurmdbd on the
controller, started before slurmctld; the L2 accounting check passes, and goes red when
slurmdbd is down."""

from __future__ import annotations

from pathlib import Path

import clusterkit
import pytest
import yaml

from pytest_hpcvalidate.config import load_config
from pytest_hpcvalidate.providers.local.cleanup import leftovers

ROOT = Path(__file__).resolve().parents[2]
CHECK = str(ROOT / "suites" / "l2_slurm" / "test_registration.py") + "::test_accounting_records_the_job"
pytestmark = [pytest.mark.integration, clusterkit.needs_local]


@pytest.fixture(scope="module")
def accounted(tmp_path_factory):
    from pytest_hpcvalidate.providers.local.engine import LocalCluster
    from pytest_hpcvalidate.providers.local.provider import spec_from_config

    body = yaml.safe_load((ROOT / "configs" / "minimal.yaml").read_text())
    body["slurm"]["accounting"] = True
    name, text = clusterkit.config_yaml("a", body)
    path = tmp_path_factory.mktemp("acct") / "cluster.yaml"
    path.write_text(text)
    engine = LocalCluster(spec_from_config(load_config(str(path)), clusterkit.STATE_ROOT))
    try:
        engine.up()
        yield engine, path
    finally:
        engine.down()
        assert leftovers(name) == []
        clusterkit.remove(name)


def run_check(pytester, path):
    result = pytester.runpytest("--hpc-config", str(path), "--hpc-reuse", "-p", "no:cacheprovider",
                                "--hpc-report-dir", str(pytester.path / "reports"), CHECK)
    return result


def test_accounting_records_jobs(accounted, pytester):
    engine, path = accounted
    assert engine.timings.get("accounting") is not None
    run_check(pytester, path).assert_outcomes(passed=1)


def test_accounting_check_fails_when_slurmdbd_is_down(accounted, pytester):
    engine, path = accounted
    engine.stop_daemon("ctl", "slurmdbd")
    try:
        result = run_check(pytester, path)
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(["*sacct*"])
    finally:
        engine.start_daemon("ctl", "slurmdbd")
