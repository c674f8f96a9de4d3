"""Record and judge a real GPU node with the project's own GPU probes (no Slurm needed).

Run ON the GPU machine (bench/gpu_device_run.sh does, in its one batch):

    python3 bench/gpu_device_run.py record DIR     # raw outputs of every GPU probe -> DIR
    python3 bench/gpu_device_run.py evaluate DIR   # the suites' judgement over DIR; exit 1 on problems
    python3 bench/gpu_device_run.py config SRC DST # SRC (configs/gpu-real.yaml) for this machine's GPU -> DST

``record`` writes what the probes' commands print on this node, unparsed, so the files can
become fixtures (``fixtures/gpu/<model>/``) exactly like the shared H100 recording:

    nvml-snippet.json          probes.gpu.facts_command(): NVML through pynvml (our format)
    nvml-snippet-in-job.json   the same with in_job=True and CUDA_VISIBLE_DEVICES=0 (CUDA count)
    nvidia-smi-q.xml / -q.txt  the fallback source, and the human-readable report
    sysfs-pci-nvidia.txt       probes.gpu.PCI_COMMAND (NVIDIA functions on the PCI bus)
    dev-nvidia.txt             probes.gpu.device_numbers_command() over /dev/nvidia*
    torch-check.txt            suites/l4_gpu/src/torch_check.py, every measurement, one task
    nvidia-smi-topo.txt, driver-version.txt

``evaluate`` parses those files with both parsers, checks that NVML and nvidia-smi agree on
every health field, and runs every L1 judgement (probes.gpu_health) and L4 metric
(probes.gpu_perf) against the model table's defaults for the GPU found, printing each
verdict. It reads the recording, not the live node, so the same command re-judges any
recording later (``python3 bench/gpu_device_run.py evaluate fixtures/gpu/<model>``).

``config`` writes a copy of a real-GPU config whose GPU groups expect the model this machine
has (nvidia-smi's name for GPU 0, its GRES type derived from it) and whose ``gpus.python`` is
the interpreter running it (the one with torch and pynvml), and prints what it changed: the lent
machine's GPU (H100 or H200) is not known before the call.
"""

from __future__ import annotations

import dataclasses
import socket
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from pytest_hpcvalidate.cluster import Node
from pytest_hpcvalidate.config import gpu_models
from pytest_hpcvalidate.config.model import Thresholds
from pytest_hpcvalidate.probes import gpu, gpu_health, gpu_perf
from pytest_hpcvalidate.providers.local import preflight
from pytest_hpcvalidate.transport.local import LocalTransport

TORCH_TESTS = ["smoke", "matmul", "copy", "membw", "train", "allreduce"]
#: fields that legitimately differ between two reads a second apart
MOMENTARY = {"power_w", "temperature_c", "pstate", "throttle_reasons"}


def record(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    node = Node(socket.gethostname(), "compute", "127.0.0.1", LocalTransport(socket.gethostname()))
    commands = {
        "nvml-snippet.json": gpu.facts_command(python=sys.executable),
        "nvml-snippet-in-job.json": "CUDA_VISIBLE_DEVICES=0; export CUDA_VISIBLE_DEVICES; "
                                    + gpu.facts_command(in_job=True, python=sys.executable),
        "nvidia-smi-q.xml": "nvidia-smi -q -x",
        "nvidia-smi-q.txt": "nvidia-smi -q",
        "nvidia-smi-topo.txt": "nvidia-smi topo -m",
        "sysfs-pci-nvidia.txt": gpu.PCI_COMMAND,
        "dev-nvidia.txt": gpu.device_numbers_command([str(p) for p in sorted(Path("/dev").glob("nvidia*"))]),
        "driver-version.txt": "cat /proc/driver/nvidia/version",
        "torch-check.txt": gpu_perf.torch_command(TORCH_TESTS, master="127.0.0.1", port=29555,
                                                  python=sys.executable),
    }
    for name, command in commands.items():
        r = node.run(command, timeout=600)
        (out / name).write_text(r.stdout)
        print(f"record {name}: exit {r.exit_code}, {len(r.stdout)} bytes, {r.duration_s:.1f}s"
              + (f"; stderr: {r.stderr.strip()[-300:]}" if r.stderr.strip() else ""))


def _health_view(g: gpu.GpuFacts) -> dict:
    return {f.name: getattr(g, f.name) for f in dataclasses.fields(g) if f.name not in MOMENTARY}


def _read(directory: Path, *names: str) -> str | None:
    """The first of ``names`` present in ``directory`` (a fresh recording, or the shared one's
    file names: nvml.json, sysfs-pci.txt), or None."""
    return next(((directory / n).read_text() for n in names if (directory / n).is_file()), None)


def _agreement(nvml: gpu.NodeGpuFacts, smi: gpu.NodeGpuFacts) -> list[str]:
    """NVML and nvidia-smi must agree on every field both read; one reading a field the other
    cannot is reported, not a problem (older recorders did not read every field)."""
    problems = []
    for a, b in zip(nvml.gpus, smi.gpus):
        va, vb = _health_view(a), _health_view(b)
        one_sided = sorted(k for k in va if gpu.known(va[k]) != gpu.known(vb[k]))
        differ = {k: (va[k], vb[k]) for k in va if k not in one_sided and va[k] != vb[k]}
        print(f"NVML vs nvidia-smi, GPU {a.index}: {'agree' if not differ else differ}"
              + (f" (read by one source only: {', '.join(one_sided)})" if one_sided else ""))
        problems += [f"GPU {a.index}: NVML and nvidia-smi differ on {k}: {v}" for k, v in differ.items()]
    return problems


def _torch_problems(text: str, spec, model: str | None, node: str) -> list[str]:
    ranks = gpu_perf.parse_torch(text)
    limits = Thresholds()
    problems = gpu_perf.rank_problems(ranks, 1, model)
    link = (spec.pcie_gen, spec.pcie_width) if spec else None
    for r in ranks:
        metrics = (gpu_perf.matmul_metrics(r, spec, limits.gpu_matmul_peak_fraction_min)
                   + gpu_perf.copy_metrics(r, link, limits.gpu_host_copy_link_fraction_min)
                   + gpu_perf.membw_metrics(r, spec, limits.gpu_memory_bw_peak_fraction_min)
                   + gpu_perf.train_metrics(r, limits.gpu_train_loss_ratio_max))
        reduce_metrics, reduce_problems = gpu_perf.allreduce_metrics([r], limits.gpu_allreduce_busbw_gbps_min, node)
        for m in metrics + reduce_metrics:
            print(f"L4 {m.message}")
        problems += [m.message for m in metrics + reduce_metrics if not m.passed] + reduce_problems
    return problems


def evaluate(directory: Path) -> int:
    node = socket.gethostname()
    nvml = gpu.parse_facts(node, _read(directory, "nvml-snippet.json", "nvml.json") or "")
    smi = gpu.parse_nvidia_smi_xml(node, _read(directory, "nvidia-smi-q.xml") or "")
    print(f"NVML: source {nvml.source}, driver {nvml.driver_version}, CUDA {nvml.cuda_driver_version}, "
          f"{len(nvml.gpus)} GPUs {[g.name for g in nvml.gpus]} {nvml.error}")
    problems = _agreement(nvml, smi) + ([] if nvml.available else [f"no NVML facts: {nvml.error}"])
    pci = [f for f in gpu.parse_sysfs_pci(_read(directory, "sysfs-pci-nvidia.txt", "sysfs-pci.txt") or "")
           if f.vendor == "10de"]
    model = nvml.gpus[0].name if nvml.gpus else None
    spec = gpu_models.by_name(model)
    exp = gpu_health.GpuExpectation(
        node=node, count=max(len([f for f in pci if f.is_display]), len(nvml.gpus)), model=model,
        device_ids=frozenset(spec.device_ids) if spec else frozenset(), memory_gb=spec.memory_gb if spec else None,
        min_driver=spec.min_driver if spec else None, ecc_required=spec.ecc_default if spec else None)
    print(f"expectation (model table: {spec.name if spec else 'unknown model'}): {exp}")
    checks = {"pci": lambda e, _: gpu_health.pci_problems(e, pci), **gpu_health.HEALTH_CHECKS}
    for name, check in checks.items():
        found = check(exp, nvml)
        print(f"L1 {name}: {'ok' if not found else found}")
        problems += found
    in_job_text = _read(directory, "nvml-snippet-in-job.json")
    if in_job_text is not None and nvml.gpus:
        in_job = gpu.parse_facts(node, in_job_text)
        found = gpu_health.job_visibility_problems(node, 1, in_job) if len(nvml.gpus) == 1 else []
        print(f"in-job view with CUDA_VISIBLE_DEVICES=0 (no cgroup here): CUDA count {in_job.cuda_device_count}, "
              f"NVML {len(in_job.gpus)}; {found or 'ok'}")
        problems += found
    torch_text = _read(directory, "torch-check.txt")
    if torch_text is not None:
        problems += _torch_problems(torch_text, spec, model, node)
    print(f"{len(problems)} problems" + "".join(f"\n  {p}" for p in problems))
    return 1 if problems else 0


def for_this_machine(src: Path, dst: Path) -> int:
    model, why = preflight.host_gpu_name(0)
    if model is None:
        print(f"config: nvidia-smi names no GPU 0 here ({why})", file=sys.stderr)
        return 1
    doc = yaml.safe_load(src.read_text())
    changed = []
    for group in doc.get("compute", []):
        gpus = group.get("gpus")
        if not gpus or gpus.get("type", "sim") == "sim" or gpus.get("simulated"):
            continue
        new = {"model": model, "type": gpu_models.gres_type(model), "python": sys.executable}
        changed += [f"{group.get('names')}: gpus.{k} {gpus.get(k)!r} -> {v!r}" for k, v in new.items() if gpus.get(k) != v]
        gpus.update(new)
    dst.write_text(yaml.safe_dump(doc, sort_keys=False))
    print(f"config: {dst} for this machine's {model}" + "".join(f"\n  {c}" for c in changed or ["(no change)"]))
    return 0


def main(argv: list[str]) -> int:
    usage = (len(argv) == 3 and argv[1] in ("record", "evaluate")) or (len(argv) == 4 and argv[1] == "config")
    if not usage:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    if argv[1] == "config":
        return for_this_machine(Path(argv[2]), Path(argv[3]))
    if argv[1] == "record":
        record(Path(argv[2]))
        return 0
    return evaluate(Path(argv[2]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
