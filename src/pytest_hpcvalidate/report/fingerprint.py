"""The cluster fingerprint: what was tested, with which tools, on which cluster.

It goes into Allure's ``environment.properties`` and the sign-off. Three sources, in this
order: the config (cluster, provider, node counts, the config file's SHA-256), the software
read from the running cluster's nodes (``cluster_facts``: Slurm, munge, Open MPI, PMIx,
kernel, OS, GPU model and driver), and the provider's static ``Node.facts`` (such as the
cgroup layout); then the runner (Python, pytest, plugin versions, the runner's kernel).
A provider fact that differs on every node (a PID, a path) identifies nodes rather than
describing the cluster and is left out.
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


def fingerprint(state, gathered: dict[str, str] | None = None) -> dict[str, str]:
    """Flat ``{key: value}`` facts of this run (string values, no None). ``gathered``: the
    facts :func:`cluster_facts.gather` read from the nodes."""
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
            }
        )
        if login := sum(n.role == "login" for n in nodes):
            facts["login_nodes"] = login
    facts.update(gathered or {})
    facts.update(
        {
            "config_sha256": config_sha256(getattr(state, "config_path", None)),
            "config_file": getattr(state, "config_path", None),
            "required_areas": ",".join(model.required_areas()) if model is not None else None,
        }
    )
    seconds = getattr(state, "provision_seconds", None)
    if seconds is not None:
        facts["provision_s"] = f"{seconds:.2f}"
    for key, value in _provider_facts(getattr(state, "cluster", None)).items():
        facts.setdefault(key, value)
    facts.update(
        {
            "python": platform.python_version(),
            "pytest": _version("pytest"),
            "pytest_hpcvalidate": _version("pytest-hpcvalidate"),
            "allure_pytest": _version("allure-pytest"),
            "runner_kernel": platform.release(),  # `uname -r` of the machine running pytest
        }
    )
    return {k: str(v) for k, v in facts.items() if v is not None and v != ""}


def _provider_facts(cluster) -> dict[str, object]:
    """The nodes' ``Node.facts`` merged, without those that differ on every node, plus the
    cluster's own ``facts`` mapping (or ``facts()``) when a provider gives one."""
    from .cluster_facts import merge

    if cluster is None:
        return {}
    nodes = getattr(cluster, "nodes", None) or []
    per_node = {n.name: getattr(n, "facts", None) or {} for n in nodes}
    identities = {
        key for key in {k for f in per_node.values() for k in f}
        if len(nodes) > 1 and len({str(f.get(key)) for f in per_node.values()}) == len(nodes)
    }
    out: dict[str, object] = {k: v for k, v in merge(per_node, [n.name for n in nodes]).items() if k not in identities}
    facts = getattr(cluster, "facts", None)
    if callable(facts):
        try:
            facts = facts()
        except Exception as exc:  # a fingerprint must never break the report
            return {**out, "cluster_facts_error": f"{type(exc).__name__}: {exc}"}
    if isinstance(facts, dict):
        out.update(facts)
    return out
