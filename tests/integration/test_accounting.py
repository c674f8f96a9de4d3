"""Job accounting on a local cluster (``slurm.accounting: true``): MariaDB + slurmdbd on the
controller, started before slurmctld; the L2 accounting check passes, and goes red when
slurmdbd is down."""

from __future__ import annotations

from pathlib import Path

import clusterkit
import pytest
import yaml


ROOT = Path(__file__).resolve().parents[2]
SUITE = str(ROOT / "suites" / "l2_slurm" / "test_registration.py")
CHECK = SUITE + "::test_accounting_records_the_job"
MEMORY_CHECK = SUITE + "::test_accounting_records_a_steps_memory_use"
pytestmark = [pytest.mark.integration, clusterkit.needs_local]


@pytest.fixture(scope="module")
def accounted(tmp_path_factory):
    body = yaml.safe_load((ROOT / "configs" / "minimal.yaml").read_text())
    body["slurm"]["accounting"] = True
    with clusterkit.running_cluster("a", body, tmp_path_factory.mktemp("acct")) as made:
        yield made


def run_check(pytester, path, check=CHECK):
    result = pytester.runpytest("--hpc-config", str(path), "--hpc-reuse", "-p", "no:cacheprovider",
                                "--hpc-report-dir", str(pytester.path / "reports"), check)
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



def test_memory_use_is_recorded_and_the_check_fails_without_gathering(accounted, pytester):
    from pytest_hpcvalidate.faults import slurm as slurmfaults

    engine, path = accounted
    run_check(pytester, path, MEMORY_CHECK).assert_outcomes(passed=1)
    with slurmfaults.slurm_conf_setting(engine, "JobAcctGatherType", "jobacct_gather/none", restart_slurmd=True):
        result = run_check(pytester, path, MEMORY_CHECK)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*a MaxRSS of *JobAcctGatherType=jobacct_gather/none*"])
