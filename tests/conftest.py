import signal
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

#: tests that boot libvirt VMs (TCG): about half of the whole run's time, spent mostly in QEMU;
#: and the run on a Debian 13 root (a whole main job): both long, both one after another in a lane
VM_TESTS = Path(__file__).parent / "libvirt"
COMPAT_TESTS = Path(__file__).parent / "compat"
#: the kept-cluster handoff (two whole runs) and the report end-to-end tests (Allure's generator,
#: headless Chromium) go in that lane too, about 2.5 min that would otherwise make the other lane
#: the longer by minutes. (Not the other existing-provider tests: they useradd/userdel on this
#: machine, and replacing /etc/passwd detaches the passwd that a local cluster with ``slurm.users``
#: binds over it in its nodes, so they stay serial with the clusters of the other lane.)
LONG_LANE_FILES = (Path(__file__).parent / "existing" / "test_kept_handoff.py",
                   Path(__file__).parent / "report" / "test_report_e2e.py")


def pytest_configure(config):
    # A shell that starts this run in the background (`cmd &` in a script, nohup, some CI
    # runners) hands it SIGINT ignored, and every process it starts inherits that: the Ctrl-C
    # tests would then interrupt nothing. Ctrl-C is what they test, so restore it here; the
    # handler (not SIG_IGN) is what a child inherits as SIG_DFL across exec.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_xdist_make_scheduler(config, log):
    """Two lanes under ``-n 2``: the VM, Debian 13, handoff and report end-to-end tests one after another on one worker, everything else
    one after another on the other. Within a lane nothing changes from a serial run; across
    lanes the tests already keep apart (own names, subnets, state roots). (A scheduler rather
    than ``xdist_group`` marks: xdist 3.8 groups by rewriting ``item._nodeid``, which pytest 9
    no longer reads, so the marks group nothing.)"""
    from xdist.scheduler import LoadScopeScheduling

    root = config.rootpath

    class Lanes(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = root / nodeid.split("::", 1)[0]
            return "vm" if VM_TESTS in path.parents or COMPAT_TESTS in path.parents or path in LONG_LANE_FILES else "host"

    return Lanes(config, log)


@pytest.fixture(autouse=True)
def _not_an_xdist_worker_inside(monkeypatch):
    """A run the test starts (pytester, or ``python -m pytest``) is not one of this run's xdist
    workers: without this it would inherit PYTEST_XDIST_WORKER and take itself for one."""
    for var in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(var, raising=False)

