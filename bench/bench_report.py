#!/usr/bin/env python3
"""What the report costs: per command, per run, and for the HTML a reviewer opens.

Rows:
  observe        cluster.COMMAND_OBSERVERS callback of the report plugin, per Node.run (µs)
  steps          writing N command steps (with stdout attached) into a real allure-pytest
                 result: a dummy failing test running N commands through LocalTransport, with
                 and without allure-pytest; the difference in CPU time per command (ms)
  generate       ``python -m pytest_hpcvalidate report DIR`` (Allure 2, single file) on the
                 results of REPORT_DIR, if given (s)

    .venv/bin/python bench/bench_report.py [-n 300] [--report-dir reports] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from pytest_hpcvalidate.report.evidence import EvidenceLog
from pytest_hpcvalidate.transport import CommandResult

CONFIG = "name: bench\nnetwork: {subnet: 10.9.0.0/24, bridge: br-b}\ncompute:\n  - names: c[1-2]\n"


def bench_observe(n: int = 100_000) -> float:
    log = EvidenceLog()
    log.begin()
    result = CommandResult("c1", "true", 0, "", "", 0.001)
    start = time.perf_counter()
    for _ in range(n):
        log.observe(result)
    return (time.perf_counter() - start) / n * 1e6


def _dummy_run(n: int, alluredir: bool) -> float:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "suites" / "l1_network").mkdir(parents=True)
        (root / "suites" / "__init__.py").touch()
        (root / "suites" / "l1_network" / "__init__.py").touch()
        (root / "suites" / "l1_network" / "test_many.py").write_text(textwrap.dedent(f"""
            from pytest_hpcvalidate.cluster import Node
            from pytest_hpcvalidate.transport.local import LocalTransport

            def test_many():
                node = Node("c1", "compute", "127.0.0.1", LocalTransport("c1"))
                for _ in range({n}):
                    node.run("echo some output")
                assert False, "fail, so every output is attached"
        """))
        (root / "c.yaml").write_text(CONFIG)
        args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hpc-config", "c.yaml",
                "--hpc-report-dir", "out", "suites"]
        if not alluredir:
            args += ["-p", "no:allure_pytest"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(args, cwd=root, capture_output=True, text=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench_steps(n: int) -> float:
    with_steps = statistics.median(_dummy_run(n, True) for _ in range(3))
    without = statistics.median(_dummy_run(n, False) for _ in range(3))
    return (with_steps - without) / n * 1000


def bench_generate(report_dir: Path) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pytest_hpcvalidate", "report", str(report_dir), "-o",
                        str(Path(tempfile.mkdtemp()) / "html")], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="commands in the steps row")
    parser.add_argument("--report-dir", type=Path, help="a run's --hpc-report-dir for the generate row")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = {"observe_us": round(bench_observe(), 3), "step_ms_per_command": round(bench_steps(args.n), 3)}
    if args.report_dir:
        rows["generate_s"] = round(bench_generate(args.report_dir), 2)
    if args.json:
        print(json.dumps(rows))
    else:
        for name, value in rows.items():
            print(f"{name:<22} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
