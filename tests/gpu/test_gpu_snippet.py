"""The commands of probes/gpu.py run for real through a node transport on this machine: the
NVML snippet with the real nvidia-ml-py (no driver here: it must say why), with pynvml
replayed from the H100 recording (tests/gpu/replay/, checked against the real binding's API),
and the nvidia-smi fallback replaying the recorded XML; the sysfs and device-number commands
against this machine's own /sys and /dev."""

from __future__ import annotations

import ctypes.util
import importlib.util
import inspect
import os
import re
import shutil
import sys
from pathlib import Path

import pynvml as real_pynvml
import pytest
from degrade import H100, NODE, nvml_text

from pytest_hpcvalidate.cluster import Node
from pytest_hpcvalidate.probes import gpu, gpu_health
from pytest_hpcvalidate.transport.local import LocalTransport

REPLAY = Path(__file__).resolve().parent / "replay"
no_driver_here = pytest.mark.skipif(
    bool(ctypes.util.find_library("nvidia-ml") or shutil.which("nvidia-smi")),
    reason="this machine has an NVIDIA driver: the no-driver paths cannot be shown here")


@pytest.fixture
def node() -> Node:
    return Node(NODE, "compute", "127.0.0.1", LocalTransport(NODE))


@pytest.fixture
def bin_dir(tmp_path, monkeypatch) -> Path:
    """A directory first on PATH, for the ``python3`` and ``nvidia-smi`` a test puts there."""
    d = tmp_path / "bin"
    d.mkdir()
    monkeypatch.setenv("PATH", f"{d}{os.pathsep}{os.environ['PATH']}")
    return d


def put(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)


def python3(bin_dir: Path, *flags: str) -> None:
    """``python3`` = this test run's interpreter (``-S``: without site-packages, so without the
    real pynvml; ``-I``: also ignoring PYTHONPATH)."""
    put(bin_dir, "python3", f'exec {sys.executable} {" ".join(flags)} "$@"')


@pytest.fixture
def replayed(bin_dir, monkeypatch):
    """NVML answers from a recording: ``replayed(text)`` selects which."""
    python3(bin_dir, "-S")
    monkeypatch.setenv("PYTHONPATH", str(REPLAY))

    def use(text: str) -> None:
        path = bin_dir.parent / "recording.json"
        path.write_text(text)
        monkeypatch.setenv("HPCV_NVML_REPLAY", str(path))

    return use


def test_the_replay_speaks_real_pynvml():
    """Every function the replay offers exists in nvidia-ml-py with the same required
    arguments, and its constants have the real values: the snippet calls real API."""
    spec = importlib.util.spec_from_file_location("replayed_pynvml", REPLAY / "pynvml.py")
    replay = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(replay)
    functions = [n for n in dir(replay) if n.startswith("nvml")]
    assert len(functions) >= 25
    for name in functions:
        real = getattr(real_pynvml, name)
        required = [p for p in inspect.signature(real).parameters.values() if p.default is p.empty]
        assert len(inspect.signature(getattr(replay, name)).parameters) == len(required), name
    for const in ("NVML_MEMORY_ERROR_TYPE_UNCORRECTED", "NVML_VOLATILE_ECC", "NVML_TEMPERATURE_GPU"):
        assert getattr(replay, const) == getattr(real_pynvml, const)
    snippet_calls = set(re.findall(r'call\("(nvml\w+)"', gpu.NVML_SNIPPET))
    assert snippet_calls <= set(functions) | {"nvmlDeviceGetCurrentClocksThrottleReasons"}
    assert all(hasattr(real_pynvml, n) for n in snippet_calls)


def test_snippet_over_the_replayed_recording_gives_the_recorded_facts(node, replayed):
    replayed((H100 / "nvml.json").read_text())
    facts = gpu.node_facts(node)
    recorded = gpu.parse_nvml_json(NODE, (H100 / "nvml.json").read_text())
    assert facts.source == "nvml" and facts.error == ""
    assert (facts.driver_version, facts.cuda_driver_version, facts.gpus) == \
        (recorded.driver_version, recorded.cuda_driver_version, recorded.gpus)
    assert facts.end >= facts.start > 0


def test_a_degraded_recording_through_the_snippet_fails_the_link_check(node, replayed):
    replayed(nvml_text({"pcie_gen_cur": 4, "pcie_width_cur": 8}))
    exp = gpu_health.GpuExpectation(node=NODE, count=1, model="NVIDIA H100 80GB HBM3")
    (problem,) = gpu_health.pcie_link_problems(exp, gpu.node_facts(node))
    assert problem.startswith(f"{NODE} GPU 0 (00000000:00:06.0): PCIe link runs at Gen4 x8, expected Gen5 x16")


@no_driver_here
def test_in_a_job_the_snippet_reports_cuda_visible_devices_and_libcuda(node, replayed, monkeypatch):
    replayed((H100 / "nvml.json").read_text())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    facts = gpu.from_result(node.run(gpu.facts_command(in_job=True, hold_s=0.2)))
    assert facts.cuda_visible_devices == ("0",) and facts.end - facts.start >= 0.2
    assert str(facts.cuda_device_count).startswith("error: OSError: libcuda.so.1")
    (problem,) = gpu_health.job_visibility_problems(NODE, 1, facts)
    assert problem.startswith(f"{NODE}: a step with --gres=gpu:1: CUDA gives no device count (error: OSError: libcuda.so.1")


@no_driver_here
def test_real_pynvml_without_a_driver_says_why(node, bin_dir):
    python3(bin_dir)  # this run's interpreter, with the real nvidia-ml-py
    facts = gpu.node_facts(node)
    assert not facts.available and facts.gpus == ()
    assert "NVMLError_LibraryNotFound" in facts.error and "nvidia-smi: not found" in facts.error


def test_without_pynvml_the_recorded_nvidia_smi_answers(node, bin_dir):
    python3(bin_dir, "-I", "-S")
    put(bin_dir, "nvidia-smi", f'[ "$*" = "-q -x" ] && exec cat {H100 / "nvidia-smi-q.xml"}; exit 9')
    facts = gpu.node_facts(node)
    assert facts.source == "nvidia-smi" and "No module named 'pynvml'" in facts.error
    assert facts.gpus == gpu.parse_nvidia_smi_xml(NODE, (H100 / "nvidia-smi-q.xml").read_text()).gpus


@no_driver_here
def test_without_python_the_reason_is_the_shell_s(node, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    facts = gpu.node_facts(node)
    assert not facts.available and "python3" in facts.error and "not found" in facts.error


def test_sysfs_command_reads_this_machines_pci_bus(node):
    """The listing command over the real /sys (filtered to a vendor this machine has)."""
    root = Path("/sys/bus/pci/devices")
    devices = sorted(root.iterdir()) if root.is_dir() else []
    if not devices:
        pytest.skip("this machine shows no PCI devices in sysfs")
    vendor = (devices[0] / "vendor").read_text().strip()
    listed = gpu.parse_sysfs_pci(node.run(gpu.PCI_COMMAND.replace("0x10de", vendor)).stdout)
    expected = {d.name: (os.path.basename(os.readlink(d / "driver")) if (d / "driver").exists() else "")
                for d in devices if (d / "vendor").read_text().strip() == vendor}
    assert {f.address: f.driver for f in listed} == expected
    assert gpu.nvidia_functions(node) == [f for f in gpu.parse_sysfs_pci(node.run(gpu.PCI_COMMAND).stdout)]


def test_device_numbers_command(node, tmp_path):
    files = ["/dev/null", str(tmp_path / "missing"), str(tmp_path)]
    numbers = gpu.parse_device_numbers(node.run(gpu.device_numbers_command(files)).stdout)
    assert numbers == {"/dev/null": (1, 3), files[1]: None, files[2]: None}


def test_the_configured_python_is_the_one_that_runs(node, tmp_path, monkeypatch):
    """``gpus.python`` (a Python off the PATH, like the GPU machine's /opt/torch/.venv) runs the
    snippet; the plain ``python3`` on the PATH (here one without pynvml) is not asked."""
    venv = tmp_path / "opt venv" / "bin"
    venv.mkdir(parents=True)
    put(venv, "python3", f'exec {sys.executable} -S "$@"')
    monkeypatch.setenv("PYTHONPATH", str(REPLAY))
    recording = tmp_path / "recording.json"
    recording.write_text((H100 / "nvml.json").read_text())
    monkeypatch.setenv("HPCV_NVML_REPLAY", str(recording))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no python3 with the replay on it
    facts = gpu.node_facts(node, python=str(venv / "python3"))
    assert facts.source == "nvml" and len(facts.gpus) == 1, facts.error


def test_a_step_whose_probe_did_not_run_does_not_count_as_seeing_no_gpu(node, tmp_path, monkeypatch):
    """A wrong ``gpus.python`` prints nothing: "no GPU seen" would then prove nothing, so the
    no-GRES check fails, naming the node and the setting."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    facts = gpu.from_result(node.run(gpu.facts_command(in_job=True, python=str(tmp_path / "no-such-python"))))
    (problem,) = gpu_health.job_visibility_problems(NODE, 0, facts)
    assert problem.startswith(f"{NODE}: a step without GRES: the GPU probe did not run in the step (")
    assert "no-such-python" in problem and "gpus.python" in problem
