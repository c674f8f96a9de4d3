"""The existing provider: attach to a cluster the run did not create, and leave it as it was.

- Every node is reached over SSH (one reused connection per node, opened in parallel with a
  bound at provisioning) or, in on-node mode (``transport: local``), by running commands on
  this machine. Global ``ssh`` settings apply unless ``existing.nodes.<name>`` overrides them.
- A node that cannot be reached does not sink the run: it stays in the cluster with a
  transport that raises the connection error (a :class:`TransportError`, which the plugin
  reports as an infrastructure error naming the node) for every check that touches it;
  every other node's checks run.
- What the run may change is limited: its jobs carry the name ``hpcv-<run id>`` and go to
  the configured partition/account/QOS (:mod:`..jobtrack`), and are cancelled at teardown if
  still there; files go only under ``<scratch_dir>/hpcv-<run id>``, removed at teardown.
  Checks that change anything else are marked ``mutates`` and skipped unless
  ``--hpc-allow-mutation`` (plugin.py). Fault injection refuses this provider.
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
from pathlib import Path

from ..cluster import Cluster, Node
from ..jobtrack import JOB_PREFIX, JobPolicy, JobPolicyTransport, cancel_leftovers, new_run_id
from ..transport import CommandResult, Transport, TransportError
from ..transport.local import LocalTransport
from ..transport.ssh import SSHTransport, connect_all
from .base import ProgressFn, Provider, ProvisioningError, no_progress

_RUN_DIR = re.compile(r"^/.+/" + re.escape(JOB_PREFIX) + r"[0-9A-Za-z-]+$")


class UnreachableTransport(Transport):
    """Stands in for a node that could not be reached when the run started.

    Every command raises the original connection error at once, instead of waiting for a
    connect timeout in every check.
    """

    def __init__(self, error: TransportError):
        self.node = error.node
        self.error = error

    def run(self, command: str, timeout: float | None = 60.0) -> CommandResult:
        raise TransportError(self.node, f"unreachable since the run started: {self.error.message}")

    def close(self) -> None:
        """Nothing is open."""

    def __repr__(self) -> str:
        return f"UnreachableTransport({self.node!r})"


def node_access(model, name: str) -> dict:
    """The effective access settings of one node: the global ``ssh`` section, then its override."""
    ssh = model.ssh
    override = model.existing.nodes.get(name) if model.existing is not None else None
    out = {
        "host": None, "transport": model.existing.transport if model.existing else "ssh",
        "user": ssh.user, "port": ssh.port, "key_file": ssh.key_file, "jump": ssh.jump, "agent": ssh.agent,
    }
    if override is not None:
        out.update({k: v for k, v in override.model_dump().items() if v is not None})
    return out


def login_user(access: dict) -> str:
    """Who a node's commands run as: the SSH login user, or this process's user on-node."""
    return getpass.getuser() if access["transport"] == "local" else access["user"]


def runs_as_root(access: dict) -> bool:
    if access["transport"] == "local":
        return os.geteuid() == 0
    return access["user"] == "root"


def without_root(model) -> list[str]:
    """The nodes whose commands would not run as root (and so need existing.sudo)."""
    return [n.name for n in model.resolved_nodes() if not runs_as_root(node_access(model, n.name))]


def ssh_transport(model, name: str, address: str, access: dict) -> SSHTransport:
    """An (unconnected) SSH transport to ``name`` as the config says to reach it."""
    ssh = model.ssh
    config = ssh.ssh_config or os.path.expanduser("~/.ssh/config")
    return SSHTransport(
        name,
        access["host"] or address,
        port=access["port"],
        user=access["user"],
        key_file=os.path.expanduser(access["key_file"]) if access["key_file"] else None,
        known_hosts=os.path.expanduser(ssh.known_hosts) if ssh.known_hosts else None,
        host_key_policy=ssh.host_key_policy,
        connect_timeout=ssh.connect_timeout_s,
        jump=access["jump"],
        ssh_config=config if os.path.isfile(config) else None,
        agent=access["agent"],
        command_timeout=ssh.command_timeout_s,
    )


def run_dir(model, policy: JobPolicy) -> str:
    """The one directory the run writes in: ``<scratch_dir>/hpcv-<run id>``."""
    scratch = model.existing.scratch_dir if model.existing is not None else "/tmp"
    return f"{scratch.rstrip('/')}/{policy.job_name}"


def build_cluster(
    model, policy: JobPolicy, unreachable: dict[str, str] | None = None, connect: bool = True
) -> tuple[Cluster, dict[str, TransportError]]:
    """The Cluster of ``model``'s nodes; with ``connect``, SSH connections are opened now, in
    parallel, and nodes that fail get an :class:`UnreachableTransport`. ``unreachable`` names
    nodes already known to be down (an xdist worker inherits the controller's verdict)."""
    known_down = {n: TransportError(n, msg) for n, msg in (unreachable or {}).items()}
    nodes = model.resolved_nodes()
    ssh: dict[str, SSHTransport] = {}
    primary: dict[str, Transport] = {}
    for n in nodes:
        access = node_access(model, n.name)
        if not n.address and not access["host"]:
            why = "no address: not registered in Slurm and none configured"
            known_down.setdefault(n.name, TransportError(n.name, why))
            continue
        try:
            ssh[n.name] = ssh_transport(model, n.name, n.address, access)
        except ValueError as exc:  # e.g. a ProxyJump loop in the ssh config: this node only
            known_down.setdefault(n.name, TransportError(n.name, str(exc)))
            continue
        primary[n.name] = LocalTransport(n.name) if access["transport"] == "local" else ssh[n.name]
    errors = dict(known_down)
    if connect:
        to_open = [t for name, t in ssh.items() if primary[name] is t and name not in errors]
        errors.update(connect_all(to_open, model.ssh.connect_parallel))
    out = []
    for n in nodes:
        if n.name in errors:
            down = UnreachableTransport(errors[n.name])
            out.append(Node(n.name, n.role, n.address, transport=down, ssh=down,
                            facts={"unreachable": errors[n.name].message}))
            continue
        sudo = bool(model.existing and model.existing.sudo) and not runs_as_root(node_access(model, n.name))
        out.append(Node(n.name, n.role, n.address, transport=JobPolicyTransport(primary[n.name], policy),
                        ssh=ssh[n.name], facts={"run_id": policy.run_id}, sudo=sudo))
    shared = model.existing is not None and model.existing.scratch_shared
    cluster = Cluster(name=model.name, provider="existing", nodes=out,
                      shared_dir=Path(run_dir(model, policy)) if shared else None,
                      access_hint=f"existing cluster {model.name!r}: nothing was provisioned, nothing is left running")
    return cluster, errors


class ExistingProvider(Provider):
    """Attaches to the nodes the config names; :meth:`destroy` undoes only what the run did."""

    kind = "existing"
    creates_cluster = False

    def __init__(self) -> None:
        self._model = None
        self._cluster: Cluster | None = None
        self._policy: JobPolicy | None = None
        self._errors: dict[str, TransportError] = {}
        self.cancelled: list[str] = []

    def provision(self, model, progress: ProgressFn = no_progress) -> Cluster:
        slurm = model.slurm
        self._model = model
        self._policy = JobPolicy(new_run_id(), slurm.partition, slurm.account, slurm.qos)
        progress("connect", "", f"{len(model.resolved_nodes())} nodes, {model.ssh.connect_parallel} at once")
        self._cluster, self._errors = build_cluster(model, self._policy)
        for node, err in self._errors.items():
            progress("unreachable", node, err.message)
        self._make_run_dir()
        return self._cluster

    def _scratch_nodes(self, cluster: Cluster) -> list[Node]:
        """Where the run's directory is made and removed: every reachable node, or one of them
        when the scratch dir is shared (one mkdir/rm instead of one per node)."""
        reachable = [n for n in cluster.nodes if n.name not in self._errors]
        shared = self._model.existing is not None and self._model.existing.scratch_shared
        return reachable[-1:] if shared else reachable

    def _make_run_dir(self) -> None:
        assert self._cluster is not None and self._policy is not None
        path = run_dir(self._model, self._policy)
        results = self._cluster.run_all(f"mkdir -p -m 0755 -- {shlex.quote(path)}",
                                        nodes=self._scratch_nodes(self._cluster), timeout=30)
        bad = [r.describe() for r in results.values() if not r.ok]
        if bad:
            raise ProvisioningError(f"cannot create the run's scratch directory {path}: " + "; ".join(bad))

    def destroy(self) -> None:
        """Cancel the run's jobs still in Slurm, remove its scratch directory, close connections."""
        cluster, policy = self._cluster, self._policy
        if cluster is None or policy is None:
            return
        self._cluster = None
        try:
            controller = cluster.controller
            if controller.name not in self._errors:
                self.cancelled = cancel_leftovers(controller, policy)
            path = run_dir(self._model, policy)
            if _RUN_DIR.match(path):  # never anything but the run's own directory
                cluster.run_all(f"rm -rf -- {shlex.quote(path)}", nodes=self._scratch_nodes(cluster), timeout=60)
        except TransportError:
            pass  # a node lost during the run: its checks already said so
        finally:
            cluster.close()

    def attach_handle(self) -> dict:
        if self._policy is None:
            raise RuntimeError("attach_handle() before provision()")
        return {"run_id": self._policy.run_id, "unreachable": {n: e.message for n, e in self._errors.items()}}

    def attach(self, model, handle: dict | None) -> Cluster:
        """An xdist worker's view of the controller's run: same run id, same unreachable nodes."""
        if handle is None:
            raise ProvisioningError("--hpc-reuse is for clusters a --hpc-keep run left up; an existing cluster "
                                    "is attached to by every run (leave --hpc-reuse out)")
        slurm = model.slurm
        policy = JobPolicy(handle["run_id"], slurm.partition, slurm.account, slurm.qos)
        cluster, _ = build_cluster(model, policy, unreachable=handle.get("unreachable"), connect=False)
        return cluster


def resolve_model(model):
    """The config as the run will use it: with ``discover: slurm`` the compute nodes come from
    the controller (before collection, since checks are parametrized over nodes)."""
    if model.provider != "existing" or model.existing is None or model.existing.discover != "slurm":
        return model
    from .slurm_discovery import discover

    ctl = model.controller
    access = node_access(model, ctl.name)
    transport = LocalTransport(ctl.name) if access["transport"] == "local" else \
        ssh_transport(model, ctl.name, str(ctl.address), access)
    try:
        return discover(model, transport)
    finally:
        transport.close()
