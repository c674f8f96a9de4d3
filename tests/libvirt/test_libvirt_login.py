"""The libvirt provider builds login nodes: a VM with munged, sshd and the cluster's slurm.conf
and no slurmd, sized like the controller, and gives every guest the config's users. From the
login VM, through the plugin over SSH, a two-node ``srun`` and an ``sbatch`` job run, every
compute VM connects back to srun's port there, and its munge and slurm.conf agree with the
controller's. (That each of these checks goes red is proven on the local provider:
tests/faults/test_login_faults.py.) The L1 ping check is left out: a third TCG guest on a
2-core host loses a ping now and then."""

from __future__ import annotations

import subprocess
import sys

import clusterkit
import libvirtkit
import pytest

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(libvirtkit.skip_reason() is not None, reason=libvirtkit.skip_reason() or "")]

CHECKS = ("l2_slurm/test_login_nodes.py",
          "l2_slurm/test_registration.py::test_munge_credential_from_node_decodes_on_controller",
          "l2_slurm/test_registration.py::test_slurm_conf_is_the_controllers",
          "l2_slurm/test_users.py")


def test_a_login_vm_submits_jobs_and_the_compute_vm_connects_back(tmp_path):
    """Also the config's users in VMs: alice resolves alike on every guest, and her job runs as
    her on the compute VM and writes her home in the shared directory."""
    name, doc = libvirtkit.config("lg", login=[{"name": "login1"}], signoff={"required": ["slurm"]})
    doc["slurm"] = {"partitions": [{"name": "all", "nodes": "ALL", "default": True}], "users": ["alice"]}
    path = libvirtkit.write_config(tmp_path / "cluster.yaml", doc)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "--hpc-config", str(path), "-p", "no:cacheprovider", "-p", "no:randomly",
             "-v", "--hpc-report-dir", str(tmp_path / "reports"), *(str(clusterkit.SUITES / c) for c in CHECKS)],
            cwd=tmp_path, capture_output=True, text=True, timeout=600)
        left = libvirtkit.leftovers(name)
    finally:
        libvirtkit.remove(name)
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-2000:]
    for check in ("test_compute_nodes_can_connect_back_to_srun_on_the_login_node[login1]",
                  "test_jobs_submitted_from_the_login_node_run[login1]",
                  "test_munge_credential_from_node_decodes_on_controller[login1]",
                  "test_slurm_conf_is_the_controllers[login1]", "test_users_resolve_alike_on_every_node[c1]",
                  "test_users_resolve_alike_on_every_node[login1]", "test_a_users_job_runs_as_them_on_every_compute_node"):
        assert f"{check} PASSED" in out, f"{check}:\n{out[-3000:]}"
    assert left == [], f"after the run: {left}"
