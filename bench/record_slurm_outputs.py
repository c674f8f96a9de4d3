"""Record what the Slurm probes parse, from a real local cluster, as fixtures/slurm/ files.

    .venv/bin/python bench/record_slurm_outputs.py OUTDIR            # this machine's Slurm
    bash bench/compat_debian13.sh /tmp/r13 --run python bench/record_slurm_outputs.py /out/rec
                                                                     # Debian 13's (Slurm 24.11)

A 1 + 3 node cluster (two nodes with simulated GPUs) comes up, each command below runs on its
controller, then the running configuration is changed (an Epilog and a node health check that
do not exist, MpiDefault=none) and read again: the shapes a check sees when those are wrong.
Files are named ``<what>-<Slurm version>.txt``; the cluster is removed afterwards.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import clusterkit  # noqa: E402

from pytest_hpcvalidate.faults import slurm as slurmfaults  # noqa: E402

BODY = {
    "compute": [{"names": "g[1-2]", "cpus": 2, "memory_mb": 1024, "gpus": {"count": 2, "type": "sim"}},
                {"names": "c1", "cpus": 2, "memory_mb": 1024}],
    "slurm": {"gres_types": ["gpu"], "mpi_default": "pmix",
              "partitions": [{"name": "all", "nodes": "ALL", "default": True, "max_time": "1:00:00"}]},
}
COMMANDS = {
    "scontrol-show-config-local": "scontrol show config",
    "scontrol-show-node-local": "scontrol show node -o",
    "scontrol-show-partition-local": "scontrol show partition -o",
    "srun-mpi-list": "srun --mpi=list 2>&1",
}
BROKEN = ("Epilog=/etc/slurm/hpcv-epilog-missing.sh\nHealthCheckProgram=/usr/sbin/hpcv-nhc-missing\n"
          "HealthCheckInterval=300\nMpiDefault=none")


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with clusterkit.running_cluster("rec", BODY, Path("/tmp")) as (engine, _path):
        ctl = next(n for n in engine.cluster.nodes if n.role == "controller")
        version = ctl.run("scontrol --version", timeout=30).check().stdout.split()[-1]
        major = ".".join(version.split(".")[:2])
        for name, command in COMMANDS.items():
            r = ctl.run(command, timeout=30).check()
            (out / f"{name}-{major}.txt").write_text(r.stdout)
        with slurmfaults.slurm_conf_added(engine, BROKEN):
            r = ctl.run("scontrol show config", timeout=30).check()
            (out / f"scontrol-show-config-local-{major}-epilog-mpinone.txt").write_text(r.stdout)
    print(f"Slurm {version}: " + ", ".join(sorted(p.name for p in out.iterdir())))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "reports/slurm-recording"))
