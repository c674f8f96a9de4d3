"""The cluster fingerprint: what was tested, with which tools, on which cluster.

It goes into Allure's ``environment.properties`` and the sign-off. Extend it by giving the
cluster a ``facts`` mapping (or a ``facts()`` method), gathered while the cluster is up
(e.g. at provisioning: Slurm, munge, Open MPI, PMIx, kernel versions, GPU model/driver):
its entries are merged in under their own names.
"""

from __future__ import annotations

import hashlib
import os
import platform
from importlib import metadata
from pathlib import Path


def config_sha256(path: str | os.PathLike | None) -> str | None:
    if not path:
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def fingerprint(state) -> dict[str, str]:
    """Flat ``{key: value}`` facts of this run (string values, no None)."""
    model = state.model
    facts: dict[str, object] = {}
    if model is not None:
        nodes = model.resolved_nodes()
        facts.update(
            {
                "cluster": model.name,
                "provider": model.provider,
                "nodes": len(nodes),
                "compute_nodes": sum(n.role == "compute" for n in nodes),
                "gpu_nodes": sum(1 for n in nodes if n.gpus),
                "required_areas": ",".join(model.required_areas()),
            }
        )
    facts.update(
        {
            "config_file": getattr(state, "config_path", None),
            "config_sha256": config_sha256(getattr(state, "config_path", None)),
            "python": platform.python_version(),
            "pytest": _version("pytest"),
            "pytest_hpcvalidate": _version("pytest-hpcvalidate"),
            "allure_pytest": _version("allure-pytest"),
            "runner_kernel": platform.release(),  # `uname -r` of the machine running pytest
        }
    )
    seconds = getattr(state, "provision_seconds", None)
    if seconds is not None:
        facts["provision_s"] = f"{seconds:.2f}"
    facts.update(_cluster_facts(getattr(state, "cluster", None)))
    return {k: str(v) for k, v in facts.items() if v is not None and v != ""}


def _cluster_facts(cluster) -> dict[str, object]:
    if cluster is None:
        return {}
    out = _node_facts(getattr(cluster, "nodes", None) or [])
    facts = getattr(cluster, "facts", None)
    if callable(facts):
        try:
            facts = facts()
        except Exception as exc:  # a fingerprint must never break the report
            return {**out, "cluster_facts_error": f"{type(exc).__name__}: {exc}"}
    if isinstance(facts, dict):
        out.update(facts)
    return out


def _node_facts(nodes) -> dict[str, object]:
    """``Node.facts`` of every node, one entry per fact: the value when all nodes agree,
    else ``value on c[1-2]; other on c3``."""
    from ..hostlist import compress

    by_key: dict[str, dict[str, list[str]]] = {}
    for node in nodes:
        for key, value in (getattr(node, "facts", None) or {}).items():
            by_key.setdefault(str(key), {}).setdefault(str(value), []).append(node.name)
    out: dict[str, object] = {}
    for key, values in by_key.items():
        if len(values) == 1 and len(next(iter(values.values()))) == len(nodes):
            out[key] = next(iter(values))
        else:
            out[key] = "; ".join(f"{v} on {compress(names)}" for v, names in values.items())
    return out
