"""The local provider's real-GPU node option, on a machine without a GPU.

A node whose GPUs are not simulated gets the host's own ``/dev/nvidia<N>`` (same device
numbers, same names) in its /dev, declared in gres.conf under those names. Here the "host
devices" are character devices made in a temporary directory (``HPCV_HOST_DEV``) with
NVIDIA's numbers; the wiring is the same code path the GPU machine takes (which GPU goes to
which node, gres.conf, the devices cgroup of a job). What needs a real GPU behind the device
(NVML, CUDA) is in bench/gpu_device_run.sh. Without the devices, provisioning stops with one
line naming the missing one.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import clusterkit
import pytest

from pytest_hpcvalidate.config import load_text
from pytest_hpcvalidate.providers.local import slurmconf
from pytest_hpcvalidate.providers.local.provider import spec_from_config

ROOT = Path(__file__).resolve().parents[2]
SUITES = ROOT / "suites"
NVIDIA_MAJOR = 195

BODY = {
    "controller": {"name": "ctl", "cpus": 1, "memory_mb": 512},
    "compute": [{"names": "g[1-2]", "cpus": 2, "memory_mb": 1024,
                 "gpus": {"count": 1, "type": "h100", "host_devices": [2, 0]}}],
    "slurm": {"gres_types": ["gpu"], "partitions": [{"name": "all", "nodes": "ALL", "default": True}]},
}


def test_host_gpus_are_dealt_to_nodes_and_named_in_gres_conf(tmp_path):
    doc = """
name: t
network: {subnet: 10.9.0.0/24, bridge: hpcv-t}
compute:
  - names: a[1-2]
    gpus: {count: 2, type: h100}
  - names: b1
    gpus: {count: 1, type: a100, host_devices: [7]}
  - names: s1
    gpus: {count: 2, type: sim}
slurm: {gres_types: [gpu]}
"""
    model = load_text(doc)
    assert model.gpu_host_devices() == {"a1": (0, 1), "a2": (2, 3), "b1": (7,)}
    spec = spec_from_config(model, tmp_path)
    gres = slurmconf.render_gres_conf(spec)
    assert "NodeName=a2 Name=gpu Type=h100 File=/dev/nvidia[2-3]" in gres
    assert "NodeName=b1 Name=gpu Type=a100 File=/dev/nvidia7" in gres
    assert "NodeName=s1 Name=gpu Type=sim File=/dev/nvidia[0-1]" in gres  # simulated: the node's own numbering
    assert slurmconf._hostrange(["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidia3", "/dev/nvidia5", "/dev/nvidia6"]) == \
        "/dev/nvidia[0-1,3,5-6]"


@pytest.mark.parametrize("edit, message", [
    ("host_devices: [7]", "compute[1].gpus.host_devices: 1 devices for 1 node(s) x 2 GPUs"),
    ("host_devices: [1]", "/dev/nvidia1 is given to both a1 and b1"),
])
def test_host_device_mistakes_are_one_line(edit, message):
    from pytest_hpcvalidate.config import ConfigError

    doc = """
name: t
network: {subnet: 10.9.0.0/24, bridge: hpcv-t}
compute:
  - names: a1
    gpus: {count: 2, type: h100}
  - names: b1
    gpus: {count: 1, type: a100, EDIT}
slurm: {gres_types: [gpu]}
"""
    if "[7]" in edit:
        doc = doc.replace("count: 1, type: a100", "count: 2, type: a100")
    with pytest.raises(ConfigError) as info:
        load_text(doc.replace("EDIT", edit), "cfg.yaml")
    assert any(message in line for line in info.value.lines()), info.value.lines()


@pytest.mark.integration
@clusterkit.needs_local
@pytest.mark.skipif(Path("/dev/nvidia0").exists(), reason="this machine has a real GPU: gpu-real.yaml provisions")
def test_real_gpu_config_without_the_device_stops_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pytest", "--hpc-config", str(ROOT / "configs" / "gpu-real.yaml"),
                           "-p", "no:cacheprovider", "--hpc-report-dir", str(tmp_path / "reports"), "-q",
                           str(SUITES / "l2_slurm")], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert ("gpu1: its real GPUs (gpus.type h100) need /dev/nvidia0, and this machine has no such device; "
            "use gpus.type: sim") in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]


@pytest.fixture
def fake_host_gpus(tmp_path, monkeypatch):
    """Three "host GPUs" and nvidiactl as character devices with NVIDIA's numbers."""
    dev = tmp_path / "dev"
    dev.mkdir()
    for name, minor in (("nvidia0", 0), ("nvidia1", 1), ("nvidia2", 2), ("nvidiactl", 255)):
        os.mknod(dev / name, stat.S_IFCHR | 0o666, os.makedev(NVIDIA_MAJOR, minor))
    monkeypatch.setenv("HPCV_HOST_DEV", str(dev))
    return dev


@pytest.mark.integration
@clusterkit.needs_local
def test_each_node_gets_its_host_gpu_and_jobs_only_the_granted_one(fake_host_gpus, tmp_path, pytester):
    with clusterkit.running_cluster("rg", BODY, tmp_path) as (engine, config):
        cluster = engine.cluster
        for node, minor in (("g1", 2), ("g2", 0)):
            out = cluster.node(node).run("stat -c '%n %t:%T' /dev/nvidia*", timeout=20).check().stdout.split("\n")
            assert f"/dev/nvidia{minor} c3:{minor:x}" in out, out  # 195 = 0xc3, the host device's numbers
        gres = (engine.conf_dir / "gres.conf").read_text()
        assert "NodeName=g1 Name=gpu Type=h100 File=/dev/nvidia2" in gres and "NodeName=g2 Name=gpu Type=h100 File=/dev/nvidia0" in gres
        # the shipped GRES and device-isolation checks, through the plugin, on the handed-over devices
        results = clusterkit.run_checks(pytester, config, "l3_gres/test_gres.py", "l3_cgroup/test_isolation.py")
        assert clusterkit.failures(results) == {}, results
        passed = {t for t, (o, _) in results.items() if o == "passed"}
        for node in ("g1", "g2"):
            assert {f"test_job_with_one_gpu_opens_exactly_its_own[{node}]", f"test_job_without_gres_cannot_open_any_gpu[{node}]",
                    f"test_gres_request_gets_exactly_n_gpus[{node}]"} <= passed, results
