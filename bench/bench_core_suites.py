#!/usr/bin/env python3
"""Wall time of a whole validation run: provision ``configs/gpu-sim.yaml`` (local provider,
1 controller + 3 compute nodes), run every layered suite, tear down — the issue's target is
<= 90 s on 2 cores. Also the per-command overhead of the local provider's in-namespace
transport and of SSH over an open session, measured on the same cluster.

    .venv/bin/python bench/bench_core_suites.py [-n 3] [--config configs/gpu-sim.yaml] [--json]

Each repetition is a fresh ``pytest --hpc-config CONFIG`` process (what an operator runs);
the numbers are the process's wall time, and the provisioning time the plugin reports.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTEST = [sys.executable, "-m", "pytest"]


def one_run(config: str) -> dict:
    with tempfile.TemporaryDirectory() as reports:
        start = time.monotonic()
        proc = subprocess.run([*PYTEST, "--hpc-config", config, "-q", "-p", "no:cacheprovider",
                               "--hpc-report-dir", reports], cwd=ROOT, capture_output=True, text=True)
        wall = time.monotonic() - start
    out = proc.stdout
    m = re.search(r"provisioned '[^']+' in ([\d.]+)s", out)
    summary = next((line for line in reversed(out.splitlines()) if " passed" in line or " failed" in line), "")
    return {"wall_s": round(wall, 2), "provision_s": float(m.group(1)) if m else None,
            "exit": proc.returncode, "summary": summary.strip("= ")}


def command_overhead(config: str, n: int = 200) -> dict:
    """Median/p99 of ``true`` through the node's transport and through SSH, on a fresh cluster."""
    from pytest_hpcvalidate.config import load_config
    from pytest_hpcvalidate.providers.local.engine import LocalCluster
    from pytest_hpcvalidate.providers.local.provider import spec_from_config

    engine = LocalCluster(spec_from_config(load_config(config)))
    cluster = engine.up()
    try:
        node = cluster.compute[0]
        out = {}
        for label, transport in (("nsenter", node.transport), ("ssh", node.ssh)):
            transport.run("true", timeout=30)  # connect / warm up
            samples = []
            for _ in range(n):
                t0 = time.perf_counter()
                transport.run("true", timeout=30)
                samples.append((time.perf_counter() - t0) * 1000)
            samples.sort()
            out[label] = {"median_ms": round(statistics.median(samples), 2),
                          "p99_ms": round(samples[int(0.99 * (len(samples) - 1))], 2)}
        return out
    finally:
        engine.down()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=3, help="repetitions of the whole run (default 3)")
    ap.add_argument("--config", default="configs/gpu-sim.yaml")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (the local provider)", file=sys.stderr)
        return 2
    config = str((ROOT / args.config).resolve())
    runs = [one_run(config) for _ in range(args.n)]
    overhead = command_overhead(config)
    result = {"config": args.config, "cores": os.cpu_count(), "runs": runs,
              "median_wall_s": statistics.median(r["wall_s"] for r in runs), "command_overhead": overhead}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.config} on {os.cpu_count()} cores, whole run (provision + all suites + teardown):")
    for i, r in enumerate(runs, 1):
        print(f"  run {i}: {r['wall_s']:6.2f} s wall, provisioning {r['provision_s']} s, exit {r['exit']}: {r['summary']}")
    print(f"  median: {result['median_wall_s']:.2f} s (target <= 90 s)")
    print("per-command overhead over an open session (`true`, 200 calls):")
    for label, o in overhead.items():
        print(f"  {label:<8} median {o['median_ms']:6.2f} ms   p99 {o['p99_ms']:6.2f} ms")
    return 0 if all(r["exit"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
