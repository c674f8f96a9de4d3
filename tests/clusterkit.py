"""Shared helpers for the project's tests that build real local clusters.

Importable from every test module as ``import clusterkit`` (``tests/`` is on ``sys.path``
through ``tests/conftest.py``). Every test cluster gets a name unique to the process and a
free ``10.234.<octet>.0/24`` subnet, so test modules, xdist workers and concurrent
developers can run clusters side by side.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pytest_hpcvalidate.providers.local.cleanup import cleanup_stale, leftovers
from pytest_hpcvalidate.providers.local.preflight import REQUIRED_BINARIES

#: the burst check's tasks on a test cluster whose body does not set slurm.burst_jobs
TEST_BURST_JOBS = 8
STATE_ROOT = Path(os.environ.get("HPCV_STATE_ROOT", "/var/lib/hpcvalidate/clusters"))
#: the shipped suites, which the fault tests run against their clusters
SUITES = Path(__file__).resolve().parents[1] / "suites"


def missing_packages() -> list[str]:
    missing = set()
    for binary, pkg in REQUIRED_BINARIES.items():
        found = os.access(binary, os.X_OK) if binary.startswith("/") else shutil.which(binary)
        if not found:
            missing.add(pkg)
    return sorted(missing)


def skip_reason() -> str | None:
    """Why a real local cluster cannot be built here, or None."""
    if os.geteuid() != 0:
        return "needs root: the local provider creates namespaces, a bridge, cgroups and mounts"
    missing = missing_packages()
    if missing:
        return "needs the Debian packages " + " ".join(missing)
    return None


needs_local = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")

#: octet -> an open, flock-ed file: held for the life of this process, so no other process
#: (another xdist worker, a developer's run) takes the same subnet even before a route shows it
_OCTETS_TAKEN: dict[int, object] = {}
OCTET_LOCKS = Path("/run/lock/hpcvalidate-test-subnets")


def _claim(octet: int) -> bool:
    OCTET_LOCKS.mkdir(parents=True, exist_ok=True)
    f = open(OCTET_LOCKS / f"10.234.{octet}", "a")  # noqa: SIM115 - kept open: the lock is the file's
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return False
    _OCTETS_TAKEN[octet] = f
    return True


def unique(tag: str) -> tuple[str, int]:
    """A cluster name unique to this process and a 10.234.<octet>.0/24 no route uses yet and
    no other live process has claimed."""
    pid = os.getpid()
    name = f"it{tag}{pid % 100000}"
    out = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    used = {int(m) for m in re.findall(r"\b10\.234\.(\d+)\.", out)} | set(_OCTETS_TAKEN)
    start = (pid * 7 + sum(map(ord, tag))) % 200
    for i in range(200):
        octet = (start + i) % 200 + 20
        if octet not in used and octet != 9 and _claim(octet):  # 9: the rendering tests' subnet
            return name, octet
    raise RuntimeError("no free 10.234.x.0/24 subnet for a test cluster")


def config_yaml(tag: str, body: dict) -> tuple[str, str]:
    """(cluster name, YAML text) for ``--hpc-config``: ``body`` plus a unique name, subnet and
    bridge. ``body`` holds everything else (compute, slurm, storage, ...)."""
    name, octet = unique(tag)
    doc = {"provider": "local", **body, "name": name}
    # the burst check's 32 tasks (the default) take ~16 s on a cluster of six CPUs: a test
    # cluster bursts 8 unless its body says otherwise
    doc["slurm"] = {"burst_jobs": TEST_BURST_JOBS, **body.get("slurm", {})}
    # the body's other network settings (mtu, domain) stay; name, subnet and bridge are the test's
    doc["network"] = {**body.get("network", {}), "subnet": f"10.234.{octet}.0/24", "bridge": f"hpcv-{name}"[:15]}
    doc["network"].pop("gateway", None)
    return name, yaml.safe_dump(doc, sort_keys=False)


def remove(name: str) -> None:
    """Remove every trace of test cluster ``name`` (no-op when it is already gone)."""
    if (STATE_ROOT / name).exists() or leftovers(name):
        cleanup_stale(cluster=name)


@contextlib.contextmanager
def running_cluster(tag: str, body: dict, directory: Path):
    """A real local cluster built from ``body`` (see :func:`config_yaml`) for a test module:
    yields (engine, config path); destroyed afterwards, and nothing of it may be left."""
    from pytest_hpcvalidate.config import load_config
    from pytest_hpcvalidate.providers.local.engine import LocalCluster
    from pytest_hpcvalidate.providers.local.provider import spec_from_config

    name, text = config_yaml(tag, body)
    path = Path(directory) / "cluster.yaml"
    path.write_text(text)
    engine = LocalCluster(spec_from_config(load_config(str(path)), STATE_ROOT))
    try:
        engine.up()
        yield engine, path
    finally:
        engine.down()
        left = leftovers(name)
        remove(name)
    assert left == [], f"tearing down {name} left {left}"


def module_cluster(tag: str, body: dict, name: str):
    """A module-scoped fixture called ``name``: (engine, config path) of a real local cluster
    built from ``body`` (:func:`running_cluster`), made once for the module. Assign it to a
    module attribute of the same name: ``broken = module_cluster("f", BODY, "broken")``."""

    @pytest.fixture(scope="module", name=name)
    def made(tmp_path_factory):
        with running_cluster(tag, body, tmp_path_factory.mktemp(name)) as pair:
            yield pair

    return made


#: Open MPI 4.1.4 with PMIx 4.2.2 on these machines: now and then (0 of 120 jobs in a loop, once in
#: a CI run of ~25 multi-node MPI jobs) a rank segfaults while starting, and its peers then fail to
#: reach it. That is this machine's MPI stack, not what a test here proves, so a shipped MPI check
#: that failed with a rank's segfault is run once more, said on stderr, and its second verdict
#: counts; any other failure, or the same one twice, stands.
RANK_SEGFAULT = "Exited with exit code 139"


def _mpi_rank_crashed(nodeid: str, outcome: str, message: str) -> bool:
    return outcome == "failed" and "/l4_mpi/" in nodeid and RANK_SEGFAULT in message


def only_mpi_ranks_crashed(verbose_output: str) -> bool:
    """A ``pytest -v`` run's output whose every failure is a shipped MPI check that failed with a
    rank's segfault (see :data:`RANK_SEGFAULT`): the run may be repeated once."""
    failed = [line for line in verbose_output.splitlines() if line.startswith(("FAILED ", "ERROR "))]  # summary
    return bool(failed) and all("/l4_mpi/" in line.split(" - ", 1)[0] for line in failed) \
        and RANK_SEGFAULT in verbose_output


def online_cpus() -> int:
    """This machine's online CPUs, which every node of a local cluster sees."""
    from pytest_hpcvalidate.probes.nodeimage import count_list

    return count_list(Path("/sys/devices/system/cpu/online").read_text()) or 1


def skip_unless_one_cpu_is_less_than_the_machine(node_cpus: int) -> int:
    """Skip a fault test that proves an unconfined ``-c 1`` task is caught where such a task
    could not be told from a confined one here: a machine of one CPU, or one whose whole CPU
    set is the one core of several threads that Slurm grants ``-c 1`` on a node of
    ``node_cpus`` (the local provider declares slurmd -C's layout, SMT included). Returns the
    online CPUs."""
    from pytest_hpcvalidate.probes.slurm import cpus_granted
    from pytest_hpcvalidate.providers.local.engine import host_cpu_layout
    from pytest_hpcvalidate.providers.local.slurmconf import SELECT_TYPE_PARAMETERS, cpu_layout

    online = online_cpus()
    if online < 2:
        pytest.skip("this machine has one CPU: a task sees one CPU pinned or not")
    hardware = host_cpu_layout()
    whole = cpus_granted(1, cpu_layout(node_cpus, hardware), SELECT_TYPE_PARAMETERS)
    if whole >= online:
        pytest.skip(f"Slurm grants -c 1 a whole core of {whole} threads here ({hardware.describe()}), all "
                    f"{online} online CPUs: a confined task sees them all too")
    return online


def run_checks(pytester, path: Path, *selection: str, suite_dir: Path = SUITES, args: tuple[str, ...] = ()) -> dict:
    """Run shipped suite checks (``file.py[::test]`` relative to ``suite_dir``; all of it when
    none) against the running cluster of config ``path`` through the plugin (``--hpc-reuse``):
    {test id: (outcome, message)} for every test that ran (see :data:`RANK_SEGFAULT`)."""
    targets = [str(Path(suite_dir) / s) for s in selection] or [str(suite_dir)]

    def run(*chosen: str) -> dict[str, tuple[str, str, str]]:
        result = pytester.runpytest("--hpc-config", str(path), "--hpc-reuse", "-p", "no:cacheprovider",
                                    "--hpc-report-dir", str(pytester.path / "reports"), *args, *chosen)
        return {rep.nodeid.split("::", 1)[1]: (rep.outcome, rep.longreprtext if rep.outcome != "passed" else "",
                                               rep.nodeid)
                for rep in result.reprec.getreports("pytest_runtest_logreport")
                if rep.when == "call" or rep.outcome != "passed"}

    found = run(*targets)
    crashed = {k: v for k, v in found.items() if _mpi_rank_crashed(v[2], v[0], v[1])}
    if crashed:
        print(f"clusterkit: an MPI rank segfaulted while starting in {', '.join(crashed)}; running it once more",
              file=sys.stderr)
        # a node id is relative to pytester's directory: make it a path pytest takes from anywhere
        again = run(*(str((pytester.path / nodeid.split("::", 1)[0]).resolve()) + "::" + nodeid.split("::", 1)[1]
                      for _, _, nodeid in crashed.values()))
        found.update({k: v for k, v in again.items() if k in crashed})
    return {k: (outcome, message) for k, (outcome, message, _) in found.items()}


def failures(results: dict) -> dict[str, str]:
    """{test id: message} of the failed ones in :func:`run_checks`' result."""
    return {k: msg for k, (outcome, msg) in results.items() if outcome == "failed"}
