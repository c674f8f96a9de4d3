"""The layers and areas of a validation run; the single source of truth for their order."""

from __future__ import annotations

#: area -> layer. A failure in a layer blocks every higher layer.
AREA_LAYER: dict[str, int] = {
    "nodes": 1,
    "network": 1,
    "pcie": 1,
    "gpu": 1,
    "slurm": 2,
    "gres": 3,
    "cgroup": 3,
    "mpi": 4,
    "containers": 4,
    "storage": 5,
    "monitoring": 5,
}

LAYER_TITLES: dict[int, str] = {
    1: "L1 Nodes, networking and PCIe",
    2: "L2 Slurm registration",
    3: "L3 GRES and cgroup isolation",
    4: "L4 MPI and containers",
    5: "L5 Shared storage and monitoring",
}

AREAS = tuple(AREA_LAYER)
