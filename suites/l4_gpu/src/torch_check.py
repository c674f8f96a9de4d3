"""PyTorch CUDA measurements, run as one Slurm task per GPU (``srun ... python3 -``).

Reads its rank from Slurm's environment (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID) and the
measurements to take from HPCV_TORCH_TESTS (comma-separated):

  smoke      CUDA reachable: device count, name, PCI address
  matmul     bf16/fp16/fp32 square matmul TFLOP/s after warm-up (HPCV_MATMUL_N, default 8192)
  copy       pinned host->device and device->host GB/s (HPCV_COPY_MIB, default 512)
  membw      device memory bandwidth, a device-to-device copy, counting bytes read and written
  train      a small MLP on synthetic data: mean loss of the first and last 5 of 300 steps
  allreduce  NCCL all-reduce of HPCV_ALLREDUCE_MIB (default 256) over every task of the step,
             rendezvous at HPCV_MASTER:HPCV_PORT; checks the sum and times it

Prints one line per task: ``HPCV_TORCH <json>``. A failed measurement is reported under
"errors" and the others still run. Timings use CUDA events after warm-up and run for at
least HPCV_MIN_SECONDS (default 0.3) per measurement. Python 3.8+, only torch.
"""

import json
import os
import socket
import sys
import time


def env_int(name, default):
    return int(os.environ.get(name) or default)


def timed(torch, fn, warmup=3, min_seconds=None):
    """Seconds per call of ``fn`` (CUDA-event timed, after warm-up, at least min_seconds total)."""
    min_seconds = float(os.environ.get("HPCV_MIN_SECONDS") or 0.3) if min_seconds is None else min_seconds
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    calls, elapsed = 0, 0.0
    while elapsed < min_seconds or calls < 3:
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        elapsed += start.elapsed_time(stop) / 1000.0
        calls += 1
    return elapsed / calls


def smoke(torch, dev, out):
    props = torch.cuda.get_device_properties(dev)
    out["device_name"] = props.name
    out["memory_mib"] = props.total_memory // 2**20
    domain = getattr(props, "pci_domain_id", 0)
    bus, device = getattr(props, "pci_bus_id", None), getattr(props, "pci_device_id", None)
    if bus is not None and device is not None:
        out["pci_address"] = f"{domain:04x}:{bus:02x}:{device:02x}.0"


def matmul(torch, dev, out):
    n = env_int("HPCV_MATMUL_N", 8192)
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32, not TF32 tensor cores
    result = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)):
        result[name] = 2 * n ** 3 / matmul_seconds(torch, dev, n, dtype) / 1e12
    out["matmul_tflops"] = result


def matmul_seconds(torch, dev, n, dtype):
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    return timed(torch, lambda: torch.matmul(a, b))


def copy(torch, dev, out):
    size = env_int("HPCV_COPY_MIB", 512) * 2**20
    host = torch.empty(size, dtype=torch.uint8, pin_memory=True)
    device = torch.empty(size, dtype=torch.uint8, device=dev)
    out["h2d_gbps"] = size / timed(torch, lambda: device.copy_(host, non_blocking=True)) / 1e9
    out["d2h_gbps"] = size / timed(torch, lambda: host.copy_(device, non_blocking=True)) / 1e9


def membw(torch, dev, out):
    size = env_int("HPCV_MEMBW_MIB", 1024) * 2**20
    src = torch.empty(size, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    out["membw_gbps"] = 2 * size / timed(torch, lambda: dst.copy_(src)) / 1e9


def train(torch, dev, out):
    torch.manual_seed(0)
    x = torch.randn(4096, 64, device=dev)
    y = torch.sin(x @ torch.randn(64, 1, device=dev))
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    out["train"] = {"loss_first": sum(losses[:5]) / 5, "loss_last": sum(losses[-5:]) / 5, "steps": len(losses)}


def allreduce(torch, dev, out):
    import torch.distributed as dist

    rank, world = out["rank"], out["world"]
    dist.init_process_group("nccl", init_method=f"tcp://{os.environ['HPCV_MASTER']}:{os.environ['HPCV_PORT']}",
                            rank=rank, world_size=world)
    try:
        count = env_int("HPCV_ALLREDUCE_MIB", 256) * 2**20 // 4
        tensor = torch.empty(count, dtype=torch.float32, device=dev)

        def once():
            tensor.fill_(rank + 1)
            dist.all_reduce(tensor)

        seconds = timed(torch, once, warmup=2)
        expected = world * (world + 1) / 2
        got = tensor[0].item()
        size = count * 4
        out["allreduce"] = {
            "world": world, "bytes": size, "seconds": seconds, "sum": got, "expected": expected,
            "ok": bool(got == expected and torch.all(tensor == expected).item()),
            # NCCL's "bus bandwidth": what each link carried, comparable across world sizes
            "busbw_gbps": size * 2 * (world - 1) / world / seconds / 1e9,
        }
    finally:
        dist.destroy_process_group()


MEASUREMENTS = {"smoke": smoke, "matmul": matmul, "copy": copy, "membw": membw, "train": train,
                "allreduce": allreduce}


def emit(out):
    print("HPCV_TORCH " + json.dumps(out), flush=True)


def main():
    out = {
        "rank": env_int("SLURM_PROCID", 0), "world": env_int("SLURM_NTASKS", 1),
        "local_rank": env_int("SLURM_LOCALID", 0), "host": socket.gethostname(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    tests = [t for t in (os.environ.get("HPCV_TORCH_TESTS") or "smoke").split(",") if t]
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        out["error"] = f"import torch: {type(exc).__name__}: {exc}"
        emit(out)
        return 3
    out["torch"] = torch.__version__
    out["cuda_available"] = torch.cuda.is_available()
    out["device_count"] = torch.cuda.device_count() if out["cuda_available"] else 0
    if not out["cuda_available"]:
        out["error"] = "torch.cuda.is_available() is False"
        emit(out)
        return 4
    dev = torch.device("cuda", out["local_rank"] % out["device_count"])
    torch.cuda.set_device(dev)
    errors = {}
    for name in ["smoke"] + [t for t in tests if t != "smoke"]:
        started = time.time()
        try:
            MEASUREMENTS[name](torch, dev, out)
        except Exception as exc:  # noqa: BLE001 - one failed measurement must not hide the others
            errors[name] = f"{type(exc).__name__}: {exc}"
        out.setdefault("seconds", {})[name] = round(time.time() - started, 3)
    if errors:
        out["errors"] = errors
    emit(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
