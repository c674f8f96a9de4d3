"""Real VMs under TCG, through the plugin: ``pytest --hpc-config X.yaml`` with provider libvirt
boots a controller and a compute VM, the shipped L1 network and L2 Slurm suites pass over
SSH, a virtio-fs share carries a host write into the guest (and back), and afterwards no
domain, network, QEMU/virtiofsd process or file of the cluster is left. Interrupting or
failing a provisioning leaves nothing either, and ``python -m pytest_hpcvalidate cleanup``
removes what a killed run left.

The guest image is built on first use (~75 s cold, see bench/bench_libvirt.py) and cached
under /var/cache/hpcvalidate/libvirt; every test here shares it.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import libvirtkit
import pytest

from pytest_hpcvalidate.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SUITES = ROOT / "suites"
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(libvirtkit.skip_reason() is not None, reason=libvirtkit.skip_reason() or "")]

VIRTIOFS_CHECK = '''
"""Runs inside the plugin run: the share the config gives c1 over virtio-fs, both ways."""
import secrets
from pathlib import Path


def test_host_write_is_seen_in_guest_and_back(cluster, node_spec):
    c1 = cluster.node("c1")
    share = node_spec["c1"].virtio_fs[0]
    mounts = c1.run("cat /proc/mounts", timeout=20).check().stdout
    assert f"{share.tag} {share.mount_point} virtiofs" in mounts, mounts
    token = secrets.token_hex(8)
    Path(share.host_path, "from-host").write_text(token)
    seen = c1.run(f"cat {share.mount_point}/from-host", timeout=20)
    assert seen.stdout.strip() == token, seen.describe()
    c1.run(f"echo {token}-back > {share.mount_point}/from-guest", timeout=20).check()
    assert Path(share.host_path, "from-guest").read_text().strip() == token + "-back"
'''


_leftovers, _remove = libvirtkit.leftovers, libvirtkit.remove


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory):
    """One plugin run on a fresh 1+1 VM cluster: L1 network, L2 Slurm, the L5 storage suite on a
    virtio-fs share both VMs mount, and the host<->guest check."""
    tmp = tmp_path_factory.mktemp("lvrun")
    share = tmp / "share"
    share.mkdir()
    name, doc = libvirtkit.config("lv")
    mount = [{"tag": "data", "host_path": str(share), "mount_point": "/mnt/data", "cache": "none"}]
    doc["compute"][0]["virtio_fs_mounts"] = mount
    doc["controller"]["virtio_fs_mounts"] = mount  # two nodes: coherency between them
    doc["storage"] = [{"kind": "virtiofs", "mount_point": "/mnt/data", "source": "data", "nodes": "ctl,c1",
                       "test_size_mib": 16, "thresholds": libvirtkit.TCG_STORAGE_THRESHOLDS}]
    path = libvirtkit.write_config(tmp / "cluster.yaml", doc)
    check = tmp / "test_virtiofs_share.py"
    check.write_text(VIRTIOFS_CHECK)
    start = time.monotonic()
    try:
        # kept (--hpc-keep), then attached to as an existing cluster through its kept-cluster.yaml,
        # then removed with `destroy`
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "--hpc-config", str(path), "-p", "no:cacheprovider", "-p", "no:randomly",
             "-v", "--hpc-keep", "--hpc-report-dir", str(tmp / "reports"),
             str(SUITES / "l1_network"), str(SUITES / "l2_slurm"), str(SUITES / "l5_storage"), str(check)],
            cwd=tmp, capture_output=True, text=True, timeout=600,
        )
        seconds = time.monotonic() - start
        kept = tmp / "reports" / "kept-cluster.yaml"
        attached = subprocess.run(
            [sys.executable, "-m", "pytest", "--hpc-config", str(kept), "-p", "no:cacheprovider", "-p", "no:randomly",
             "-v", "--hpc-report-dir", str(tmp / "reports-existing"), str(SUITES / "l2_slurm")],
            cwd=tmp, capture_output=True, text=True, timeout=600,
        ) if kept.is_file() else None
        destroy = subprocess.run([sys.executable, "-m", "pytest_hpcvalidate", "destroy", name],
                                 capture_output=True, text=True, timeout=120)
        left = _leftovers(name)
    finally:
        _remove(name)
    return {"name": name, "proc": proc, "left": left, "seconds": seconds, "attached": attached, "destroy": destroy}


def test_l1_network_and_l2_slurm_suites_pass_over_ssh(suite_run):
    proc = suite_run["proc"]
    out = proc.stdout
    # exit 1 without a failure: areas the config declares were not selected, so no sign-off
    assert proc.returncode in (0, 1) and " FAILED" not in out and " ERROR" not in out, out[-4000:] + proc.stderr[-2000:]
    for check in ("test_node_reaches_every_other_node[c1]", "test_ssh_reaches_node_with_cluster_key[ctl]",
                  "test_bandwidth_between_node_pair", "test_node_registered_and_usable[c1]",
                  "test_a_job_step_runs_on_every_node_of_each_partition", "test_batch_job_completes",
                  "test_munge_credential_from_node_decodes_on_controller[c1]"):
        assert f"{check}" in out and out.split(check, 1)[1].split("\n", 1)[0].count("PASSED"), f"{check}:\n{out[-3000:]}"
    assert f"provisioned '{suite_run['name']}'" in out


def test_storage_suite_passes_on_the_virtio_fs_share(suite_run):
    out = suite_run["proc"].stdout
    for check in ("test_mounted_with_type_source_read_write[c1:/mnt/data]",
                  "test_mounted_with_type_source_read_write[ctl:/mnt/data]", "test_free_space_above_threshold",
                  "test_write_rename_delete_visible_on_other_node", "test_fio_sequential_and_random_read",
                  "test_small_file_metadata_rate", "test_one_job_writing_from_every_node_leaves_every_file_complete"):
        lines = [line for line in out.splitlines() if check in line]
        assert lines and all("PASSED" in line for line in lines), f"{check}:\n{out[-3000:]}"
    assert re.search(r"^L5 storage\s+PASS", out, re.M), out[-3000:]


def test_virtio_fs_share_carries_host_writes_into_the_guest(suite_run):
    out = suite_run["proc"].stdout
    assert "test_host_write_is_seen_in_guest_and_back PASSED" in out, out[-3000:]


def test_kept_vms_answer_the_existing_provider_and_destroy_removes_them(suite_run):
    """--hpc-keep leaves the VMs up with a kept-cluster.yaml; a separate run through the existing
    provider (SSH, nothing provisioned) passes L2 on them; `destroy` removes them."""
    out = suite_run["proc"].stdout
    assert "cluster left running (--hpc-keep)" in out, out[-3000:]
    attached = suite_run["attached"]
    assert attached is not None, "no kept-cluster.yaml was written"
    text = attached.stdout
    assert " FAILED" not in text and " ERROR" not in text, text[-4000:] + attached.stderr[-2000:]
    assert "test_node_registered_and_usable[c1] PASSED" in text and "test_batch_job_completes PASSED" in text, text[-3000:]
    destroy = suite_run["destroy"]
    assert destroy.returncode == 0 and f"destroyed cluster {suite_run['name']!r}" in destroy.stdout, destroy.stderr


def test_nothing_of_the_cluster_is_left(suite_run):
    assert suite_run["left"] == [], f"after the run: {suite_run['left']}"


# -- failure, Ctrl-C and a killed run -----------------------------------------------------------

def _start_run(tmp_path: Path, doc: dict) -> subprocess.Popen:
    path = libvirtkit.write_config(tmp_path / "cluster.yaml", doc)
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "--hpc-config", str(path), "-p", "no:cacheprovider", "-v",
         "--hpc-report-dir", str(tmp_path / "reports"), str(SUITES / "l2_slurm")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _wait_for_domains(name: str, proc: subprocess.Popen, timeout: float = 200.0) -> None:
    """Until a domain of ``name`` runs (the image may have to be built first)."""
    import libvirt

    from pytest_hpcvalidate.providers.libvirt.cleanup import domain_name

    conn = libvirt.openReadOnly("qemu:///system")
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if any(d.name().startswith(domain_name(name, "")) for d in conn.listAllDomains()):
                return
            time.sleep(0.1)
    finally:
        conn.close()
    raise AssertionError(f"no domain of {name} appeared (run exited {proc.poll()}): {proc.stdout.read()[-2000:]}")


@pytest.mark.parametrize("sig", ["SIGINT", "SIGKILL"])
def test_interrupted_provisioning_leaves_nothing(sig, tmp_path):
    """Ctrl-C while the VMs boot: the run's own teardown removes everything. SIGKILL (no
    teardown at all): the state file lets ``python -m pytest_hpcvalidate cleanup`` do it."""
    name, doc = libvirtkit.config("sig")
    proc = _start_run(tmp_path, doc)
    try:
        _wait_for_domains(name, proc)
        assert _leftovers(name), "the cluster should exist while it boots"
        proc.send_signal(getattr(signal, sig))
        out, _ = proc.communicate(timeout=120)
        if sig == "SIGINT":
            # pytest's own word for it: the exit code cannot tell (a run of one layer's suite
            # exits non-zero anyway, as the other layers are not signed off)
            assert "KeyboardInterrupt" in out, f"{sig} did not stop the run:\n{out[-2000:]}"
        if sig == "SIGKILL":
            left = _leftovers(name)
            assert any(item.startswith("domain ") for item in left), f"a killed run cannot clean up: {left}"
            cli = subprocess.run([sys.executable, "-m", "pytest_hpcvalidate", "cleanup", "--cluster", name],
                                 capture_output=True, text=True, timeout=120)
            assert cli.returncode == 0, cli.stderr
        assert _leftovers(name) == [], f"after {sig}: {_leftovers(name)}\n{out[-2000:]}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _remove(name)


def test_a_guest_that_does_not_boot_in_time_fails_naming_it_and_leaves_nothing(tmp_path):
    from pytest_hpcvalidate.providers import ProvisioningError
    from pytest_hpcvalidate.providers.libvirt import LibvirtCluster

    name, doc = libvirtkit.config("slow", libvirt={"boot_timeout_s": 0.5})
    model = load_config(str(libvirtkit.write_config(tmp_path / "c.yaml", doc)))
    cluster = LibvirtCluster(model)
    try:
        with pytest.raises(ProvisioningError) as err:
            cluster.up()
        message = str(err.value)
        assert "c1, ctl did not answer on port 22" in message and "console:" in message, message
        assert _leftovers(name) == []
    finally:
        _remove(name)
