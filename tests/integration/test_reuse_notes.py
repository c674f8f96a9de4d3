"""``--hpc-reuse`` of a kept local cluster from which the host detached a node's /etc bind (its
``useradd`` or a package install replaced /etc/passwd, an editor /etc/hosts): the run binds it
again before the checks and says so in its summary, with and without pytest-xdist (where a
worker attaches and hands the note to the controller)."""

from __future__ import annotations

import subprocess
import sys

import clusterkit
import pytest

pytestmark = [pytest.mark.integration, clusterkit.needs_local]

BODY = {
    "controller": {"name": "ctl", "cpus": 1, "memory_mb": 512},
    "compute": [{"names": "c[1-2]", "cpus": 1, "memory_mb": 512}],
    "slurm": {"partitions": [{"name": "all", "nodes": "ALL", "default": True}]},
    "signoff": {"required": ["network"]},  # the one check run here is a network check
}
#: a check that reads /etc/hosts on every node: red on c1 while its bind is gone
CHECK = clusterkit.SUITES / "l1_network" / "test_reachability.py::test_every_node_name_resolves_to_its_address"
NOTE = ("hpcvalidate: bound again what the host had detached from the nodes' /etc by replacing its own file "
        "(useradd, a package install): c1 /etc/hosts")


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["one-process", "xdist"])
def test_reuse_binds_again_what_the_host_detached_and_says_so(tmp_path, workers):
    with clusterkit.running_cluster("rn", BODY, tmp_path) as (engine, path):
        c1 = engine.cluster.node("c1")
        subprocess.run(["nsenter", "-t", str(c1.facts["anchor_pid"]), "-m", "--", "umount", "/etc/hosts"], check=True)
        assert not c1.run("getent hosts c2").ok, "c1 should see the host's /etc/hosts now"
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "--hpc-config", str(path), "--hpc-reuse", "--hpc-report-dir",
             str(tmp_path / "reports"), "-p", "no:cacheprovider", "-p", "no:randomly", *workers, str(CHECK)],
            cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
        assert run.stdout.count(NOTE) == 1, run.stdout[-3000:]
        assert "3 passed" in run.stdout, run.stdout[-3000:]
        assert c1.run("getent hosts c2").ok
