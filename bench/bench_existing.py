#!/usr/bin/env python3
"""The existing provider's SSH costs, against the sshd of every node of a real local cluster.

    sudo .venv/bin/python bench/bench_existing.py                  # 1 controller + 8 compute
    sudo .venv/bin/python bench/bench_existing.py --compute 32 --runs 3 -n 200 --json

Rows:
  connect-parallel  opening a strict-host-key SSH connection to every node with
                    ``connect_all(parallel=32)`` (what the provider does at the start of a run)
  connect-serial    the same, one node after the other (``parallel=1``)
  provision         ``ExistingProvider.provision`` (connect + the run's scratch dir on every
                    node) and ``destroy`` (squeue/scancel of the run's jobs + removing it)
  raw-exec          ``true`` over an open connection with bare paramiko (open_session,
                    exec_command, recv_exit_status) — the floor for any SSH framework
  transport         the same command through ``SSHTransport.run`` on the same connection
  node              through the provider's Node (the run's Slurm job variables exported first)
  plain-shell       the three rows again against a throwaway sshd with bash's ~/.bashrc skipped

raw-exec and transport/node alternate call by call, so load on the machine hits all alike;
the framework overhead is the median of the paired differences (each call minus the raw call
just before it). Commands start the remote user's shell; the local cluster's sshd sets
``SHLVL=1``, so bash skips root's ~/.bashrc (which runs ``pyenv init``, ~90 ms, on the
development machines; bench_transport.py's "ssh" row shows that shell's share).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests"), str(REPO / "tests" / "existing"), str(REPO / "bench")]

import clusterkit  # noqa: E402
import yaml  # noqa: E402
from bench_transport import measure, sshd_transports  # noqa: E402
from existingkit import PARTITIONS, existing_doc  # noqa: E402

from pytest_hpcvalidate.config import load_text  # noqa: E402
from pytest_hpcvalidate.jobtrack import JobPolicy, JobPolicyTransport  # noqa: E402
from pytest_hpcvalidate.providers.existing import ExistingProvider, node_access, ssh_transport  # noqa: E402
from pytest_hpcvalidate.transport.ssh import connect_all  # noqa: E402


def existing_model(engine, config_path: Path, parallel: int):
    """The existing-provider config of ``engine``'s cluster (its --hpc-keep handoff)."""
    doc = existing_doc(engine, config_path)
    doc["ssh"]["connect_parallel"] = parallel
    return load_text(yaml.safe_dump(doc))


def time_connect(model, parallel: int) -> float:
    transports = [ssh_transport(model, n.name, n.address, node_access(model, n.name)) for n in model.resolved_nodes()]
    try:
        start = time.perf_counter()
        errors = connect_all(transports, parallel)
        elapsed = time.perf_counter() - start
    finally:
        for t in transports:
            t.close()
    if errors:
        raise SystemExit(f"connect failed: {errors}")
    return elapsed


def alternating(a, b, calls: int) -> tuple[dict, dict]:
    """measure() of ``a`` and ``b`` with their calls interleaved one by one."""
    samples: dict[str, list[float]] = {"a": [], "b": []}

    def timed(key, fn):
        def run():
            start = time.perf_counter()
            fn()
            samples[key].append((time.perf_counter() - start) * 1000)
        return run

    ta, tb = timed("a", a), timed("b", b)
    measure(lambda: (ta(), tb()), calls)
    first, second = samples["a"][-calls:], samples["b"][-calls:]
    paired = statistics.median(y - x for x, y in zip(first, second))
    return _stats(first), {**_stats(second), "overhead_ms": round(paired, 3)}


def _stats(ms: list[float]) -> dict:
    ms = sorted(ms)
    return {"median_ms": round(statistics.median(ms), 3), "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 3),
            "calls": len(ms)}


def raw_exec(connection, norc: bool = False) -> None:
    chan = connection.open_session()
    try:
        if norc:  # as bench_transport's ssh-norc row: bash then skips ~/.bashrc
            chan.set_environment_variable("SHLVL", "1")
        chan.exec_command("true")
        if chan.recv_exit_status() != 0:
            raise RuntimeError("true failed")
    finally:
        chan.close()


def bench(engine, config_path: Path, runs: int, calls: int, parallel: int) -> dict:
    model = existing_model(engine, config_path, parallel)
    out: dict = {"nodes": len(model.resolved_nodes())}
    par = [time_connect(model, parallel) for _ in range(runs)]
    ser = [time_connect(model, 1) for _ in range(runs)]
    out["connect-parallel"] = {"median_s": round(statistics.median(par), 3), "runs": par}
    out["connect-serial"] = {"median_s": round(statistics.median(ser), 3), "runs": ser}
    provider = ExistingProvider()
    start = time.perf_counter()
    cluster = provider.provision(model)
    provisioned = time.perf_counter() - start
    try:
        node = cluster.compute[0]
        ssh = node.ssh
        ssh.run("true").check()
        raw, transport = alternating(lambda: raw_exec(ssh.connection),
                                     lambda: ssh.run("true", timeout=30).check(), calls)
        _, via_node = alternating(lambda: raw_exec(ssh.connection), lambda: node.run("true", timeout=30).check(), calls)
    finally:
        start = time.perf_counter()
        provider.destroy()
        destroyed = time.perf_counter() - start
    out["provision"] = {"provision_s": round(provisioned, 3), "destroy_s": round(destroyed, 3)}
    out["raw-exec"] = raw
    out["transport"] = transport
    out["node"] = via_node
    return out


def plain_shell(calls: int) -> dict:
    """The same overhead rows against a throwaway sshd with a plain shell (no ~/.bashrc), where
    the remote shell no longer hides the framework's own cost in its noise."""
    with tempfile.TemporaryDirectory() as tmp, sshd_transports(Path(tmp)) as transports:
        t = transports["ssh-norc"]
        node = JobPolicyTransport(t, JobPolicy("bench", partition="all", account="acct"))
        t.run("true").check()
        raw, transport = alternating(lambda: raw_exec(t.connection, norc=True),
                                     lambda: t.run("true", timeout=30).check(), calls)
        _, via_node = alternating(lambda: raw_exec(t.connection, norc=True),
                                  lambda: node.run("true", timeout=30).check(), calls)
    return {"raw-exec": raw, "transport": transport, "node": via_node}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compute", type=int, default=8, help="compute nodes of the local cluster (default 8)")
    ap.add_argument("--runs", type=int, default=3, help="connect measurements per row (default 3)")
    ap.add_argument("-n", "--calls", type=int, default=200, help="commands per latency row (default 200)")
    ap.add_argument("--parallel", type=int, default=32, help="connect_all bound (default 32)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    body = {"controller": {"name": "ctl", "cpus": 1, "memory_mb": 512},
            "compute": [{"count": args.compute, "cpus": 1, "memory_mb": 512}],
            "slurm": {"partitions": PARTITIONS}}
    with tempfile.TemporaryDirectory() as tmp, clusterkit.running_cluster("bx", body, Path(tmp)) as (engine, path):
        result = bench(engine, path, args.runs, args.calls, args.parallel)
    result["plain-shell"] = plain_shell(args.calls)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"existing provider, {result['nodes']} nodes (local cluster sshd, strict host keys)")
    par, ser = result["connect-parallel"]["median_s"], result["connect-serial"]["median_s"]
    print(f"  connect all, parallel {args.parallel}: {par:.3f} s median of {args.runs}")
    print(f"  connect all, serial:      {ser:.3f} s median of {args.runs}")
    print(f"  provision {result['provision']['provision_s']:.3f} s, destroy {result['provision']['destroy_s']:.3f} s")
    for title, rows in (("the local cluster's sshd (SHLVL=1: no ~/.bashrc)", result),
                        ("a plain shell (throwaway sshd, no ~/.bashrc)", result["plain-shell"])):
        print(f"  per command over an open session, {title}, {args.calls} calls:")
        for row in ("raw-exec", "transport", "node"):
            r = rows[row]
            extra = f"  overhead {r['overhead_ms']:+.2f} ms" if "overhead_ms" in r else ""
            print(f"    {row:<10} median {r['median_ms']:8.2f} ms  p99 {r['p99_ms']:8.2f} ms{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
