"""An existing-provider config for a local cluster the engine built (tests and bench share it).

It is the ``--hpc-keep`` handoff (:mod:`pytest_hpcvalidate.providers.handoff`) of the cluster,
so every run against it also proves that a kept cluster's ``kept-cluster.yaml`` works.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from pytest_hpcvalidate.config import load_config
from pytest_hpcvalidate.providers.handoff import kept_cluster_doc

#: this is about reaching the nodes, not about a loaded 2-core machine's ping times
RELAXED_THRESHOLDS = {"latency_p50_ms_max": 50.0, "latency_p99_ms_max": 200.0, "bandwidth_pairs_max": 1,
                      "bandwidth_gbps_min": 0.1}
PARTITIONS = [{"name": "all", "nodes": "ALL", "default": True}]


def existing_doc(engine, config_path: Path, **sections) -> dict:
    """The handoff config of ``engine``'s cluster (built from ``config_path``) with relaxed
    latency thresholds and the run's jobs in partition ``all``; ``sections`` merged in on top."""
    doc = kept_cluster_doc(load_config(str(config_path)), engine.cluster)
    doc["thresholds"] = {**doc.get("thresholds", {}), **RELAXED_THRESHOLDS}
    doc["slurm"] = {**doc.get("slurm", {}), "partition": "all"}
    for key, value in sections.items():
        doc[key] = {**doc[key], **value} if isinstance(doc.get(key), dict) else value
    return doc


def existing_config(engine, config_path: Path, directory: Path, **sections) -> Path:
    """:func:`existing_doc` written to ``directory/existing.yaml``."""
    path = Path(directory) / "existing.yaml"
    path.write_text(yaml.safe_dump(existing_doc(engine, config_path, **sections), sort_keys=False))
    return path
