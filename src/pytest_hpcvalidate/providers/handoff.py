"""``--hpc-keep`` handoff: the config that attaches the existing provider to a kept cluster.

When a run leaves the cluster it made running, it writes ``<report dir>/kept-cluster.yaml``:
the run's own config (every assertion as the operator wrote it) turned into an
existing-provider config with each node's address and how the run reached it over SSH
(user, port, key, known_hosts). ``pytest --hpc-config reports/kept-cluster.yaml`` then
validates the same cluster as a cluster the run did not create: nothing is provisioned and
nothing on it is changed. Built from the :class:`Cluster` alone, so any provider's kept
cluster can be handed off.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..transport.ssh import SSHTransport

FILE_NAME = "kept-cluster.yaml"
#: network keys that describe how the run built the network, not facts about it
_BUILT = ("bridge", "gateway")


def _ssh_of(cluster) -> SSHTransport | None:
    return next((n.ssh for n in cluster.nodes if isinstance(n.ssh, SSHTransport)), None)


def kept_cluster_doc(model, cluster) -> dict:
    """The existing-provider config (as YAML-ready data) of ``cluster``, made from ``model``."""
    doc = model.model_dump(mode="json", exclude_unset=True, by_alias=True)
    doc["provider"] = "existing"
    doc.pop("libvirt", None)
    doc["network"] = {k: v for k, v in doc["network"].items() if k not in _BUILT}
    addresses = {n.name: n.address for n in cluster.nodes}
    doc["controller"] = {**doc.get("controller", {}), "address": addresses[cluster.controller.name]}
    for group, spec in zip(doc["compute"], model.compute):
        group.pop("first_address", None)
        group["addresses"] = [addresses[name] for name in spec.node_names()]
    for login in doc.get("login", []):
        login["address"] = addresses[login["name"]]
    ssh = _ssh_of(cluster)
    if ssh is not None:
        doc["ssh"] = {**doc.get("ssh", {}), "user": ssh.user, "port": ssh.port, "known_hosts": str(ssh.known_hosts),
                      "host_key_policy": "strict", **({"key_file": ssh.key_files[0]} if ssh.key_files else {})}
    existing = {"scratch_dir": str(cluster.shared_dir), "scratch_shared": True} if cluster.shared_dir else {}
    doc["existing"] = {**doc.get("existing", {}), **existing}
    return doc


def write_kept_cluster(model, cluster, report_dir: Path) -> Path:
    """Write ``<report_dir>/kept-cluster.yaml``; returns its path."""
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / FILE_NAME
    header = (f"# existing-provider config for the kept cluster {cluster.name!r} (written by --hpc-keep)\n"
              f"#   pytest --hpc-config {path}\n")
    path.write_text(header + yaml.safe_dump(kept_cluster_doc(model, cluster), sort_keys=False))
    return path
