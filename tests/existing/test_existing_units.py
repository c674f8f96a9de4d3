"""The existing provider's pure parts: config rules, per-node access, job policy, discovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_hpcvalidate.config import ConfigError, load_text
from pytest_hpcvalidate.jobtrack import JobPolicy, JobPolicyTransport
from pytest_hpcvalidate.probes import slurm
from pytest_hpcvalidate.providers import ProvisioningError
from pytest_hpcvalidate.providers.existing import UnreachableTransport, node_access
from pytest_hpcvalidate.providers.slurm_discovery import compute_groups, discover
from pytest_hpcvalidate.transport import TransportError
from pytest_hpcvalidate.transport.local import LocalTransport

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "slurm"

EXPLICIT = """
name: prod
provider: existing
network: {subnet: 10.1.0.0/24}
controller: {name: head, address: 10.1.0.2}
compute:
  - names: n[01-02]
    addresses: [10.1.0.11, 10.1.0.12]
ssh: {user: hpc, key_file: /k/id, jump: bastion.example.org}
existing:
  nodes:
    n02: {port: 2222, jump: none, transport: local}
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_text(text, "cfg.yaml")
    lines = info.value.lines()
    assert all("\n" not in line for line in lines)
    return lines


def test_existing_config_needs_no_bridge_and_merges_node_overrides():
    cfg = load_text(EXPLICIT)
    assert [(n.name, n.address) for n in cfg.resolved_nodes()] == [
        ("head", "10.1.0.2"), ("n01", "10.1.0.11"), ("n02", "10.1.0.12")]
    assert node_access(cfg, "n01") == {"host": None, "transport": "ssh", "user": "hpc", "port": 22,
                                       "key_file": "/k/id", "jump": "bastion.example.org", "agent": True}
    n02 = node_access(cfg, "n02")
    assert (n02["port"], n02["jump"], n02["transport"], n02["user"]) == (2222, "none", "local", "hpc")


def test_an_existing_node_may_hold_the_subnets_first_address():
    """The local and libvirt providers give the subnet's first address to their bridge; an
    existing cluster has no such bridge, and its head node often is .1."""
    cfg = load_text(EXPLICIT.replace("address: 10.1.0.2}", "address: 10.1.0.1}"))
    assert cfg.resolved_nodes()[0].address == "10.1.0.1"
    local = (EXPLICIT.replace("provider: existing", "provider: local").replace("address: 10.1.0.2}", "address: 10.1.0.1}")
             .replace("subnet: 10.1.0.0/24}", "subnet: 10.1.0.0/24, bridge: hpcv-prod}"))
    assert any("10.1.0.1 of node head is the host side of the bridge" in line for line in errors_of(local))


@pytest.mark.parametrize(
    "edit, message",
    [
        (("controller: {name: head, address: 10.1.0.2}", "controller: {name: head}"),
         "controller.address: required with provider existing"),
        (("    addresses: [10.1.0.11, 10.1.0.12]\n", ""), "compute[0]: give 'addresses' (or 'first_address')"),
        (("    n02: {", "    n09: {"), "existing.nodes: unknown node(s) n09"),
        (("transport: local}", "transport: rsh}"),
         "existing.nodes.n02.transport: got 'rsh'; allowed: 'ssh' or 'local'"),
    ],
)
def test_existing_config_mistakes_are_one_line(edit, message):
    (line,) = errors_of(EXPLICIT.replace(*edit))
    assert message in line, line


def test_job_policy_environment_for_srun_sbatch_and_salloc():
    policy = JobPolicy("0101T0000-abc", partition="batch", account="proj1", qos=None)
    env = policy.environment()
    assert env["SLURM_JOB_NAME"] == env["SBATCH_JOB_NAME"] == env["SALLOC_JOB_NAME"] == "hpcv-0101T0000-abc"
    assert env["SLURM_PARTITION"] == env["SBATCH_PARTITION"] == "batch" and env["SALLOC_ACCOUNT"] == "proj1"
    assert not any(k.endswith("_QOS") for k in env)


def test_job_policy_transport_exports_and_reports_the_plain_command():
    t = JobPolicyTransport(LocalTransport("here"), JobPolicy("r1", partition="p q"))
    r = t.run("cat <<'EOF'\n$SBATCH_PARTITION/$SLURM_JOB_NAME\nEOF\necho \"$SBATCH_PARTITION/$SLURM_JOB_NAME\"")
    assert r.stdout.splitlines() == ["$SBATCH_PARTITION/$SLURM_JOB_NAME", "p q/hpcv-r1"]
    assert r.command.startswith("cat <<'EOF'")


def test_unreachable_transport_raises_the_original_reason():
    down = UnreachableTransport(TransportError("c7", "cannot connect to 10.0.0.7:22: Connection refused"))
    with pytest.raises(TransportError, match="c7: unreachable since the run started: cannot connect to 10.0.0.7:22"):
        down.run("true")


DISCOVER = """
name: found
provider: existing
network: {subnet: 10.234.190.0/24}
controller: {name: ctl, address: 10.234.190.10}
compute:
  - names: c1
    cpus: 4
  - names: c9
existing: {discover: slurm}
"""


class Recorded:
    """Answers ``scontrol show node/partition -o`` with outputs recorded on a local cluster."""

    node = "ctl"

    def run(self, command: str, timeout=None):
        from pytest_hpcvalidate.transport import CommandResult

        name = "scontrol-show-node-local-2.txt" if "node" in command else "scontrol-show-partition-local.txt"
        return CommandResult("ctl", command, 0, (FIXTURES / name).read_text(), "", 0.01)


def test_discovery_checks_the_node_names_settings_give_against_what_slurm_reports():
    """With discovery the config's own node list is incomplete, so names are checked after it:
    a monitored node Slurm does not know is an error naming it, not a node silently unmonitored."""
    ok = discover(load_text(DISCOVER + 'monitoring: {nodes: "c[1-2]", prometheus_node: c2}\n'), Recorded())
    assert ok.monitored_nodes() == ["c1", "c2"] and ok.prometheus_node() == "c2"
    with pytest.raises(ProvisioningError, match=r"discover: slurm: monitoring.nodes: unknown node\(s\) c77;"):
        discover(load_text(DISCOVER + 'monitoring: {nodes: "c1,c77"}\n'), Recorded())
    with pytest.raises(ProvisioningError, match=r"monitoring.prometheus_node: c42 is not a node of this cluster"):
        discover(load_text(DISCOVER + "monitoring: {prometheus_node: c42}\n"), Recorded())
    with pytest.raises(ProvisioningError, match=r"existing.nodes: unknown node\(s\) c55"):
        discover(load_text(DISCOVER.replace("existing: {discover: slurm}", "existing: {discover: slurm, nodes: {c55: {}}}")),
                 Recorded())
    # without discovery the same names are refused when the config is read
    assert "monitoring.nodes: unknown node(s) c77" in " ".join(errors_of(
        DISCOVER.replace("existing: {discover: slurm}\n", "").replace("- names: c1\n", "- names: c1\n    addresses: [10.234.190.11]\n")
        .replace("- names: c9\n", "- names: c9\n    addresses: [10.234.190.19]\n") + 'monitoring: {nodes: "c1,c77"}\n'))


def test_discovery_keeps_what_the_config_states_and_takes_the_rest_from_slurm():
    cfg = discover(load_text(DISCOVER), Recorded())
    nodes = {n.name: n for n in cfg.resolved_nodes()}
    assert list(nodes) == ["ctl", "c1", "c2", "c9"]
    assert (nodes["c1"].cpus, nodes["c1"].memory_mb, nodes["c1"].address) == (4, 1024, "10.234.190.11")  # cpus stated
    assert (nodes["c2"].cpus, nodes["c2"].memory_mb, nodes["c2"].address) == (2, 1024, "10.234.190.12")
    assert nodes["c9"].address == ""  # named by the config, unknown to Slurm: its checks say so
    assert [(p.name, p.nodes, p.default) for p in cfg.slurm.partitions] == [("all", "c[1-2]", True)]


def test_discovery_reads_gres_and_names_an_unresolvable_node_addr():
    found = slurm.parse_nodes((FIXTURES / "scontrol-show-node-h100.txt").read_text())
    vm = found["vm"]
    found["vm"] = vm.__class__(**{**vm.__dict__, "address": "vm.invalid"})  # RFC 2606: never resolves
    with pytest.raises(ProvisioningError, match="NodeAddr 'vm.invalid' of vm does not resolve here"):
        compute_groups(load_text(DISCOVER), found)
    found["vm"] = vm.__class__(**{**vm.__dict__, "address": "10.234.190.50"})
    (vm, _c1, _c9) = compute_groups(load_text(DISCOVER), found)
    assert vm == {"cpus": 16, "memory_mb": 100000, "gpus": {"count": 1, "type": "h100"}, "names": "vm",
                  "addresses": ["10.234.190.50"]}


def test_kept_cluster_handoff_names_every_node_and_how_it_was_reached(tmp_path):
    from pytest_hpcvalidate.cluster import Cluster, Node
    from pytest_hpcvalidate.providers.handoff import write_kept_cluster
    from pytest_hpcvalidate.transport.ssh import SSHTransport

    model = load_text("""
name: kept
network: {subnet: 10.9.0.0/24, bridge: br-k, mtu: 1400}
compute:
  - count: 2
    prefix: gpu
    cpus: 4
    gpus: {count: 1}
  - names: c1
slurm: {gres_types: [gpu]}
""")
    nodes = [Node(n.name, n.role, n.address, transport=LocalTransport(n.name),
                  ssh=SSHTransport(n.name, n.address, key_file="/keys/id", known_hosts="/keys/kh"))
             for n in model.resolved_nodes()]
    cluster = Cluster("kept", "local", nodes, shared_dir=Path("/srv/shared"))
    path = write_kept_cluster(model, cluster, tmp_path / "reports")
    kept = load_text(path.read_text())
    assert kept.provider == "existing" and kept.network.mtu == 1400
    assert [(n.name, n.address, n.cpus, n.gpus) for n in kept.resolved_nodes()] == [
        (n.name, n.address, n.cpus, n.gpus) for n in model.resolved_nodes()]
    assert (kept.ssh.user, kept.ssh.key_file, kept.ssh.known_hosts, kept.ssh.host_key_policy) == (
        "root", "/keys/id", "/keys/kh", "strict")
    assert (kept.existing.scratch_dir, kept.existing.scratch_shared) == ("/srv/shared", True)
