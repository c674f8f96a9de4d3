#!/usr/bin/env python3
"""Containers through Slurm on the local provider: how long the test image takes to build
(cold, and again from the cache), and what a container adds to a Slurm step — the same
``true`` as plain ``srun``, through charliecloud (``srun ch-run IMG -- true``) and through
Slurm's own ``srun --container=BUNDLE`` (runc), median and p90 of N steps each, interleaved.

    .venv/bin/python bench/bench_containers.py [-n 9] [--json]

Builds a skeleton image (no torch) into a temporary cache, so the numbers do not depend on
what an earlier run left in /var/cache/hpcvalidate/images.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

BODY = {
    "controller": {"name": "ctl", "cpus": 1, "memory_mb": 512},
    "compute": [{"names": "c[1-2]", "cpus": 2, "memory_mb": 1024}],
    "slurm": {"partitions": [{"name": "all", "nodes": "ALL", "default": True}]},
}


def build_times(cache: Path) -> dict:
    from pytest_hpcvalidate.providers.local.addons import container_image as ci

    recipe = ci.Recipe("skeleton", ("/var/lib/hpcvalidate/clusters",), None, bundle=True)
    t0 = time.monotonic()
    ci.build(recipe, cache)
    cold = time.monotonic() - t0
    t0 = time.monotonic()
    _, cached = ci.build(recipe, cache)
    warm = time.monotonic() - t0
    assert cached
    return {"skeleton_build_cold_s": round(cold, 4), "skeleton_build_cached_s": round(warm, 5)}


def step_overhead(n: int) -> dict:
    import clusterkit

    from pytest_hpcvalidate.probes import containers as ctr

    images = f"/var/lib/hpcvalidate/images/bench-{os.getpid()}"
    body = {**BODY, "containers": {"runtime": "charliecloud", "image": f"{images}/image", "oci_bundle": f"{images}/bundle",
                                   "build_test_image": True, "binds": [str(clusterkit.STATE_ROOT)]}}
    with tempfile.TemporaryDirectory() as tmp, clusterkit.running_cluster("bc", body, Path(tmp)) as (engine, _):
        ctl = engine.cluster.controller
        ways = {
            "plain": "srun -w c1 -n1 true",
            "charliecloud": f"srun -w c1 -n1 /bin/sh -c {shlex.quote(ctr.Runtime('charliecloud', images + '/image').wrap('true'))}",
            "slurm_oci": f"srun -w c1 -n1 --container={images}/bundle true",
        }
        times: dict[str, list[float]] = {k: [] for k in ways}
        for _ in range(n):
            for name, cmd in ways.items():
                r = ctl.run(cmd, timeout=60)
                if not r.ok:
                    raise SystemExit(f"{name}: {r.describe()}")
                times[name].append(r.duration_s * 1000)
        out = {}
        for name, ts in times.items():
            ts.sort()
            out[f"{name}_median_ms"] = round(statistics.median(ts), 1)
            out[f"{name}_p90_ms"] = round(ts[min(len(ts) - 1, int(0.9 * len(ts)))], 1)
        for name in ("charliecloud", "slurm_oci"):
            out[f"{name}_overhead_ms"] = round(out[f"{name}_median_ms"] - out["plain_median_ms"], 1)
        out["image_build_in_provisioning_s"] = engine.timings.get("container_image_build")
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=9, help="steps per way (default 9)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        result = build_times(Path(cache))
    result.update(step_overhead(args.n))
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for k, v in result.items():
            print(f"{k:34} {v}")


if __name__ == "__main__":
    main()
