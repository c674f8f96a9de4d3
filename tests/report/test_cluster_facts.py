"""What the fingerprint reads from a cluster's nodes: the parsers against real recorded
outputs (a Debian 12 node of the local provider; the H100 node's nvidia-smi, which cannot
run here), the script run for real on this machine, and folding nodes together."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

from pytest_hpcvalidate.cluster import Cluster, Node
from pytest_hpcvalidate.report import cluster_facts
from pytest_hpcvalidate.report.fingerprint import fingerprint
from pytest_hpcvalidate.transport.local import LocalTransport

DATA = Path(__file__).parent / "data"


def test_a_debian_node_of_the_local_provider():
    facts = cluster_facts.parse((DATA / "facts-debian12-node.txt").read_text())
    assert facts == {
        "kernel": "6.18.44-fc-v595", "os": "Debian GNU/Linux 12 (bookworm)", "slurm": "22.05.8",
        "munge": "0.5.15", "openmpi": "4.1.4", "pmix": "4.2.2rc2",
    }


def test_gpu_model_and_driver_from_the_h100_node():
    # nvidia-smi --query-gpu=index,name,...,driver_version,... --format=csv, recorded on the lent H100 node
    facts = cluster_facts.parse("@@gpu\n" + (DATA / "nvidia-smi-query-h100.csv").read_text())
    assert facts == {"gpu_model": "NVIDIA H100 80GB HBM3", "gpu_driver": "580.159.04"}


def test_several_gpus_are_counted_and_other_tools_versions_are_read():
    text = (
        "@@gpu\nname, driver_version\nNVIDIA A100-SXM4-80GB, 550.54.15\nNVIDIA A100-SXM4-80GB, 550.54.15\n"
        "@@slurm\nslurm 23.11.4\n@@openmpi\nmpirun (Open MPI) 4.1.6\n\nReport bugs to ...\n"
        "@@pmix\npmix_info (PMIx) 5.0.1\n@@munge\n"
    )
    assert cluster_facts.parse(text) == {
        "gpu_model": "2x NVIDIA A100-SXM4-80GB", "gpu_driver": "550.54.15",
        "slurm": "23.11.4", "openmpi": "4.1.6", "pmix": "5.0.1",
    }


def test_the_script_runs_for_real_and_reads_this_machine():
    node = Node("here", "compute", "127.0.0.1", LocalTransport("here"))
    facts = cluster_facts.gather(Cluster("t", "local", [node]))
    assert facts["kernel"] == os.uname().release
    assert "facts_unreadable" not in facts
    assert set(facts) >= {"kernel", "os"}


def test_version_drift_between_nodes_is_named_by_hostlist():
    per_node = {
        "c1": {"slurm": "22.05.8", "kernel": "6.1"}, "c2": {"slurm": "22.05.8", "kernel": "6.1"},
        "c3": {"slurm": "22.05.8", "kernel": "6.1"}, "c4": {"slurm": "23.02.1", "kernel": "6.1"},
        "ctl": {"kernel": "6.1"},
    }
    assert cluster_facts.merge(per_node) == {"slurm": "22.05.8 on c[1-3]; 23.02.1 on c4", "kernel": "6.1"}


def test_unreachable_nodes_are_named():
    nodes = [Node("c1", "compute", "10.9.0.2", LocalTransport("c1")),
             Node("c2", "compute", "10.9.0.3", LocalTransport("c2"))]
    nodes[1].transport.run = lambda command, timeout=None: LocalTransport("c2").run("exit 255", timeout)
    facts = cluster_facts.gather(Cluster("t", "local", nodes))
    assert facts["facts_unreadable"] == "c2" and "kernel" in facts


def test_fingerprint_orders_config_then_cluster_software_and_drops_node_identities(tmp_path):
    from pytest_hpcvalidate.config import load_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: t\nnetwork: {subnet: 10.9.0.0/24, bridge: br-t}\ncompute:\n  - names: c[1-2]\n")
    model = load_config(str(cfg))
    nodes = [Node(name, "compute", "10.9.0.2", LocalTransport(name), facts={"anchor_pid": pid, "cgroup_layout": "v1"})
             for name, pid in (("ctl", 11), ("c1", 12), ("c2", 13))]
    state = SimpleNamespace(model=model, config_path=str(cfg), cluster=Cluster("t", "local", nodes))
    facts = fingerprint(state, {"slurm": "22.05.8", "kernel": "6.1.0"})
    assert list(facts)[:7] == ["cluster", "provider", "nodes", "compute_nodes", "gpu_nodes", "slurm", "kernel"]
    assert facts["cgroup_layout"] == "v1" and "anchor_pid" not in facts
