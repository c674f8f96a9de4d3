"""The config model: shipped configs validate; every kind of mistake is one clear line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import yaml

from pytest_hpcvalidate.config import ConfigError, load_config, load_text
from pytest_hpcvalidate.config.model import ClusterConfig

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "configs").rglob("*.yaml"))

MINIMAL = """
name: t
network: {subnet: 10.9.0.0/24, bridge: br-t}
compute:
  - names: c[1-2]
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_text(text, "cfg.yaml")
    lines = info.value.lines()
    assert lines and all("\n" not in line and line.strip() for line in lines)
    return lines


def test_shipped_configs_are_found():
    names = {p.name for p in SHIPPED}
    assert {"minimal.yaml", "gpu-sim.yaml", "full-stack.yaml", "seed-multi-gpu.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_validates(path):
    cfg = load_config(str(path))
    nodes = cfg.resolved_nodes()
    assert nodes[0].role == "controller" and any(n.role == "compute" for n in nodes)
    assert len({n.name for n in nodes}) == len(nodes)
    assert set(cfg.required_areas()) <= set(cfg.declared_areas())


def test_minimal_defaults_and_addresses():
    cfg = load_text(MINIMAL)
    assert cfg.provider == "local"
    assert [(n.name, n.address) for n in cfg.resolved_nodes()] == [
        ("ctl", "10.9.0.10"), ("c1", "10.9.0.11"), ("c2", "10.9.0.12"),
    ]
    assert cfg.declared_areas() == ["nodes", "network", "slurm", "cgroup", "mpi"]
    assert cfg.slurm.default_partition.name == "debug"


def test_gpu_sim_declares_gres():
    cfg = load_config(str(ROOT / "configs/gpu-sim.yaml"))
    gpu_nodes = {n.name: n.gpus for n in cfg.resolved_nodes() if n.gpus}
    assert gpu_nodes == {"gpu1": 2, "gpu2": 2}
    # simulated GPUs: GRES and isolation are checked, NVML/PCIe health is not applicable
    assert "gres" in cfg.required_areas() and "gpu" not in cfg.required_areas()
    real = cfg.model_copy(update={"compute": [g.model_copy(update={"gpus": g.gpus.model_copy(update={"type": "h100"})})
                                              if g.gpus else g for g in cfg.compute]})
    assert "gpu" in real.declared_areas()


def test_gpu_python_is_per_group_and_checked():
    doc = MINIMAL.replace("names: c[1-2]", "names: c[1-2]\n    gpus: {count: 1, type: h100, python: /opt/torch/.venv/bin/python3}")
    doc += "  - names: d1\n    gpus: {count: 1, type: h100}\nslurm: {gres_types: [gpu]}\n"
    nodes = {n.name: n for n in load_text(doc).resolved_nodes()}
    assert nodes["c2"].gpu_python == "/opt/torch/.venv/bin/python3"
    assert nodes["d1"].gpu_python == nodes["ctl"].gpu_python == "python3"
    (line,) = errors_of(doc.replace("/opt/torch/.venv/bin/python3", "'python3; rm -rf /'"))
    assert "compute[0].gpus.python" in line


def test_seed_format_maps_onto_the_model():
    cfg = load_config(str(ROOT / "configs/examples/seed-multi-gpu.yaml"))
    assert cfg.provider == "libvirt" and cfg.name == "hpc-cluster"
    nodes = {n.name: n for n in cfg.resolved_nodes()}
    assert set(nodes) == {"controller", "compute-01", "compute-02"}
    assert nodes["compute-01"].memory_mb == 16 * 1024 and nodes["compute-01"].cpus == 8
    assert nodes["compute-01"].gpus == 1 and nodes["compute-01"].gpu_type == "rtx4060ti"
    assert [d.pci_address for d in nodes["compute-02"].pcie] == ["0000:07:00.0", "0000:07:00.1"]
    assert cfg.slurm.default_partition.name == "gpu" and cfg.slurm.gres_types == ["gpu"]
    assert cfg.storage[0].kind == "beegfs" and cfg.storage[0].beegfs.storage_nodes == ["compute-01", "compute-02"]
    assert nodes["controller"].virtio_fs[0].host_path == "/srv/project"  # ${TOT:-/srv/project}


def test_seed_count_form(monkeypatch):
    text = """
version: "1.0"
metadata: {name: m, description: d}
clusters:
  hpc:
    name: Test HPC
    network: {subnet: 192.168.150.0/24, bridge: virbr150}
    controller: {cpu_cores: 2, memory_gb: 4, disk_gb: 20, ip_address: 192.168.150.10}
    compute_nodes: {count: 3, cpu_cores: 2, memory_gb: 4, disk_gb: 20, ip: DHCP}
    slurm_config: {partitions: [debug], default_partition: debug, max_job_time: "1:00:00"}
"""
    cfg = load_text(text)
    assert cfg.name == "test-hpc"
    assert [n.name for n in cfg.resolved_nodes()] == ["controller", "compute-01", "compute-02", "compute-03"]


def test_seed_errors_use_seed_paths():
    text = (ROOT / "configs/examples/seed-multi-gpu.yaml").read_text()
    data = yaml.safe_load(text)
    data["clusters"]["hpc"]["compute_nodes"][1]["memory_gb"] = 0
    data["clusters"]["hpc"]["compute_nodes"][0]["pcie_passthrough"]["devices"][0]["pci_address"] = "1:0.0"
    lines = errors_of(yaml.safe_dump(data))
    assert any("clusters.hpc.compute_nodes[1].memory_gb: must be >= 1, got 0" in line for line in lines)
    assert any("compute_nodes[0].pcie_passthrough.devices[0].pci_address" in line and "PCI address" in line for line in lines)


def test_seed_overlapping_subnets():
    data = yaml.safe_load((ROOT / "configs/examples/seed-multi-gpu.yaml").read_text())
    data["clusters"]["cloud"]["network"]["subnet"] = "192.168.100.128/25"
    (line,) = errors_of(yaml.safe_dump(data))
    assert "clusters.cloud.network.subnet" in line and "overlaps" in line


def test_three_mistakes_three_lines_with_lines_and_paths():
    text = """name: bad
network:
  subnet: 10.0.0.0/24
  bridgee: br0
compute:
  - names: c[1-2]
    memory_mb: 0
slurm:
  mpi_default: openmpi
"""
    lines = errors_of(text)
    assert len(lines) == 4, lines  # bridge missing + bridgee unknown + memory + mpi
    assert "cfg.yaml:4: network.bridgee: unknown key 'bridgee' (did you mean 'bridge'?)" in lines[1]
    assert any(line.startswith("cfg.yaml:7: compute[0].memory_mb: must be >= 64, got 0") for line in lines)
    assert any("slurm.mpi_default: got 'openmpi'; allowed: 'pmix', 'pmi2' or 'none'" in line for line in lines)


@pytest.mark.parametrize(
    "patch, expected",
    [
        ("compute:\n  - names: c[1-2]\n  - names: c2\n", "duplicate node name 'c2'"),
        ("compute:\n  - names: c1\n    addresses: [10.9.0.50]\n  - names: c2\n    addresses: [10.9.0.50]\n",
         "duplicate address 10.9.0.50"),
        ("compute:\n  - names: c1\n    gpus: {count: 2}\n", "2 GPUs declared but slurm.gres_types does not include 'gpu'"),
        ("compute:\n  - count: 300\n", "outside network.subnet"),
        ("compute:\n  - names: c1\n    addresses: [10.9.0.1]\n", "host side of the bridge"),
        ("compute:\n  - names: c1\nslurm:\n  partitions: [{name: a, nodes: 'x[1-2]'}]\n", "unknown node(s) x1, x2"),
        ("compute:\n  - names: c1\n    count: 2\n", "give either 'names'"),
        ("compute:\n  - names: c[1-\n", "'[' without ']'"),
        ("compute:\n  - names: c1\nsignoff: {required: [storage]}\n", "'storage' is required but the config declares nothing"),
        ("compute:\n  - names: c1\nnetwork: {subnet: 10.9.0.1/24, bridge: b}\n", "is not an IPv4 network"),
        ("compute:\n  - names: c1\nmonitoring: {nodes: 'c[1-3]'}\n", "monitoring.nodes: unknown node(s) c2, c3"),
        ("compute:\n  - names: c1\nmonitoring: {prometheus_node: mon}\n", "monitoring.prometheus_node: mon is not a node"),
        ("compute:\n  - names: c1\nmonitoring: {node_exporter_port: 0}\n", "monitoring.node_exporter_port: must be >= 1"),
        ("compute:\n  - names: c1\nsignoff: {required: [monitoring]}\n", "'monitoring' is required but the config declares nothing"),
        ("compute:\n  - names: c1\nmonitoring: {alerting: {alertmanager_node: am}}\n",
         "monitoring.alerting.alertmanager_node: am is not a node"),
        ("compute:\n  - names: c1\nmonitoring: {prometheus_url: 'http://mon01:9090'}\n",
         "monitoring.prometheus_url: the local provider runs Prometheus and Alertmanager on a node"),
        ("compute:\n  - names: c1\nmonitoring: {prometheus_url: 'mon01:9090'}\n",
         "is not an http(s) URL of a host and port"),
        ("compute:\n  - names: c1\nmonitoring: {alerting: {watchdog_alert: 'dead man'}}\n",
         "monitoring.alerting.watchdog_alert: 'dead man' is not a Prometheus metric or alert name"),
    ],
)
def test_semantic_and_field_problems(patch, expected):
    base = "name: t\nnetwork: {subnet: 10.9.0.0/24, bridge: br-t}\n"
    text = base + patch if not patch.count("network:") else "name: t\n" + patch
    lines = errors_of(text)
    assert any(expected in line for line in lines), lines


def test_monitoring_nodes_and_area():
    cfg = load_text(MINIMAL + "monitoring: {nodes: 'c2', prometheus_node: c1}\n", "cfg.yaml")
    assert cfg.monitored_nodes() == ["c2"] and cfg.prometheus_node() == "c1"
    assert "monitoring" in cfg.declared_areas() and "monitoring" in cfg.required_areas()
    every = load_text(MINIMAL + "monitoring: {}\n", "cfg.yaml")
    assert every.monitored_nodes() == ["ctl", "c1", "c2"] and every.prometheus_node() == "ctl"
    assert "node_load1" in every.monitoring.required_metrics
    assert load_text(MINIMAL, "cfg.yaml").monitored_nodes() == []
    assert every.alertmanager_node() is None
    alerting = load_text(MINIMAL + "monitoring: {prometheus_node: c1, alerting: {}}\n", "cfg.yaml")
    assert alerting.alertmanager_node() == "c1" and alerting.monitoring.alerting.watchdog_alert == "Watchdog"
    assert "monitoring" not in load_text(MINIMAL, "cfg.yaml").declared_areas()


def test_yaml_syntax_error_has_line_and_column():
    (line,) = errors_of("name: x\nnetwork: [1\n")
    assert "invalid YAML: line 3, column 1" in line


def test_duplicate_yaml_keys_are_reported():
    (line,) = errors_of("name: x\nname: y\n")
    assert "cfg.yaml:2: name: duplicate key (first at line 1)" in line


def test_missing_env_var_named(monkeypatch):
    monkeypatch.delenv("HPCV_UNSET_VAR", raising=False)
    lines = errors_of("name: t\ndescription: ${HPCV_UNSET_VAR}\n" + MINIMAL.split("\n", 2)[2])
    assert any("HPCV_UNSET_VAR is not set" in line and "description" in line for line in lines)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(str(tmp_path))


def test_validate_prints_the_nodes_monitoring_and_sign_off_areas():
    out = subprocess.run([sys.executable, "-m", "pytest_hpcvalidate", "validate", str(ROOT / "configs" / "full-stack.yaml")],
                         capture_output=True, text=True, check=True, env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"}).stdout
    assert "cluster 'full-stack'" in out and "is valid" in out and "10.231.3.13" in out
    # the columns full-stack uses beyond resources: c3's Slurm feature and the modules every node needs
    assert "features" in out and re.search(r"c3 .* 10\.231\.3\.13 .* cpu +│ fuse ", out), out
    minimal = subprocess.run([sys.executable, "-m", "pytest_hpcvalidate", "validate", str(ROOT / "configs" / "minimal.yaml")],
                             capture_output=True, text=True, check=True, env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"}).stdout
    assert "features" not in minimal and "kernel modules" not in minimal, minimal
    # a login node: its resources are not asserted
    assert re.search(r"login1 +│ login +│ 10\.231\.3\.14 +│ - +│ - +│ - +│ - +│ - ", out), out
    assert "monitoring: Prometheus at ctl:9090 scrapes 5 node exporters on :9100; Alertmanager at ctl:9093, " \
           "watchdog Watchdog" in out
    assert "required for sign-off: nodes, network, slurm, gres, cgroup, mpi, containers, storage, monitoring" in out


def test_json_schema_is_printed_and_describes_thresholds():
    out = subprocess.run(
        [sys.executable, "-m", "pytest_hpcvalidate", "schema"], capture_output=True, text=True, check=True
    ).stdout
    schema = json.loads(out)
    assert schema["title"] == "ClusterConfig"
    props = schema["$defs"]["Thresholds"]["properties"]
    assert "default 1" in props["latency_p50_ms_max"]["description"]
    assert set(schema["required"]) == {"name", "network", "compute"}


def test_schema_matches_model_for_every_threshold():
    """Every threshold documents its default and unit (the README table is made from this)."""
    for name, field in ClusterConfig.model_fields["thresholds"].annotation.model_fields.items():
        assert field.description and "default" in field.description, name


def test_the_local_provider_waits_for_readiness_at_least_the_registration_threshold(tmp_path: Path) -> None:
    from pytest_hpcvalidate.providers.local.provider import spec_from_config

    default = spec_from_config(load_text(MINIMAL), tmp_path)
    slow = spec_from_config(load_text(MINIMAL + "thresholds: {node_register_s_max: 300}\n"), tmp_path)
    fast = spec_from_config(load_text(MINIMAL + "thresholds: {node_register_s_max: 5}\n"), tmp_path)
    assert (default.ready_timeout_s, slow.ready_timeout_s, fast.ready_timeout_s) == (60.0, 300.0, 60.0)


def test_node_image_sysctls_default_and_a_bad_name():
    assert "vm.zone_reclaim_mode" in load_text(MINIMAL).node_image.sysctls
    assert load_text(MINIMAL + "node_image: {sysctls: [vm.swappiness]}\n").node_image.sysctls == ["vm.swappiness"]
    (line,) = errors_of(MINIMAL + "node_image: {sysctls: [vm/swappiness]}\n")
    assert line == ("cfg.yaml:6: node_image.sysctls[0]: 'vm/swappiness' is not a sysctl name with dots, as "
                    "`sysctl -a` prints it (e.g. vm.zone_reclaim_mode)")


def test_node_image_forbidden_taints_default_and_a_bad_letter():
    assert load_text(MINIMAL).node_image.forbidden_taints == "BDLM"
    (line,) = errors_of(MINIMAL + "node_image: {forbidden_taints: BDLMZ}\n")
    assert line.startswith("cfg.yaml:6: node_image.forbidden_taints: 'BDLMZ' is not kernel taint letters such as BDLM")


def test_slurm_features_of_a_group_unchecked_by_default_and_a_bad_name():
    config = load_text(MINIMAL + "  - names: g1\n    features: [gpu, ib-hdr]\n  - names: e1\n    features: []\n")
    nodes = {n.name: n for n in config.resolved_nodes()}
    assert (nodes["c1"].features, nodes["g1"].features, nodes["e1"].features) == (None, ("gpu", "ib-hdr"), ())
    (line,) = errors_of(MINIMAL + "    features: [gpu&fast]\n")
    assert line.startswith("cfg.yaml:6: compute[0].features[0]: 'gpu&fast' is not a Slurm node feature"), line


def test_kernel_modules_required_of_every_node_and_of_a_group_and_a_bad_name():
    config = load_text(MINIMAL + "  - names: g1\n    kernel_modules: [nvidia-peermem]\n"
                       "node_image: {kernel_modules: [fuse]}\n")
    assert config.node_image.kernel_modules == ["fuse"]
    nodes = {n.name: n for n in config.resolved_nodes()}
    assert (nodes["c1"].kernel_modules, nodes["g1"].kernel_modules) == ((), ("nvidia-peermem",))
    (line,) = errors_of(MINIMAL + "node_image: {kernel_modules: [nvidia.ko]}\n")
    assert line == ("cfg.yaml:6: node_image.kernel_modules[0]: 'nvidia.ko' is not a kernel module name, as lsmod "
                    "prints it (e.g. nvidia_peermem)")


def test_the_readme_config_example_is_valid():
    """The example the README shows a user (after "A config in our format") loads as it is."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("A config in our format:", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    config = load_text(block, "README.md")
    nodes = {n.name: n for n in config.resolved_nodes()}
    assert nodes["c1"].features == ("gpu",) and nodes["c1"].kernel_modules == ("fuse",)


@given(features=st.lists(st.lists(st.from_regex(r"[A-Za-z][A-Za-z0-9_.+-]{0,12}", fullmatch=True), max_size=4,
                                  unique=True) | st.none(), min_size=1, max_size=3))
@settings(max_examples=40, deadline=None)
def test_features_reach_each_nodes_slurm_conf_line_as_written(features, tmp_path_factory):
    """Whatever valid features each group declares, the local provider's slurm.conf gives each
    of its nodes exactly those (none: no Features=), and the model keeps None apart from []."""
    from pytest_hpcvalidate.providers.local import slurmconf
    from pytest_hpcvalidate.providers.local.provider import spec_from_config

    groups = "".join(f"  - names: g{i}n[1-2]\n" + (f"    features: {json.dumps(f)}\n" if f is not None else "")
                     for i, f in enumerate(features))
    config = load_text("name: t\nnetwork: {subnet: 10.9.0.0/24, bridge: br-t}\ncompute:\n" + groups)
    text = slurmconf.render_slurm_conf(spec_from_config(config, tmp_path_factory.mktemp("s")))
    for i, f in enumerate(features):
        for n in (1, 2):
            line = next(x for x in text.splitlines() if x.startswith(f"NodeName=g{i}n{n} "))
            assert ("Features=" + ",".join(f) in line.split()) if f else ("Features=" not in line), line
            assert {n.name: n for n in config.resolved_nodes()}[f"g{i}n{n}"].features == (tuple(f) if f is not None
                                                                                         else None)


def test_a_word_yaml_reads_as_a_boolean_or_nothing_is_told_to_be_quoted():
    (line,) = errors_of(MINIMAL + "    features: [on, gpu]\n")
    assert line == ("cfg.yaml:6: compute[0].features[0]: a string is needed, and YAML read this one as True: YAML "
                    "takes on/off, yes/no, true/false for a boolean; quote it, e.g. 'on'")
    (line,) = errors_of(MINIMAL + "node_image: {kernel_modules: [null]}\n")
    assert line == ("cfg.yaml:6: node_image.kernel_modules[0]: a string is needed, and this one is empty (YAML reads "
                    "an empty value, ~ and null as nothing; quote 'null')")


def test_login_nodes_follow_the_compute_nodes_and_are_checked_like_them():
    cfg = load_text(MINIMAL + "login: [{name: login1}, {name: login2, address: 10.9.0.50}]\n")
    assert [(n.name, n.role, n.address, n.origin) for n in cfg.resolved_nodes()][3:] == [
        ("login1", "login", "10.9.0.13", "login[0]"), ("login2", "login", "10.9.0.50", "login[1]")]
    assert cfg.model_copy(update={"monitoring": None}).unknown_node_names() == []
    duplicate = errors_of(MINIMAL + "login: [{name: c2}]\n")
    assert any("login[0]: duplicate node name 'c2' (also in compute[0])" in line for line in duplicate), duplicate
    clash = errors_of(MINIMAL + "login: [{name: login1, address: 10.9.0.11}]\n")
    assert any("duplicate address 10.9.0.11 for compute[0] (c1) and login[0] (login1)" in line for line in clash), clash
    outside = errors_of(MINIMAL + "login: [{name: login1, address: 10.8.0.1}]\n")
    assert any("login[0]: address 10.8.0.1 of node login1 is outside network.subnet" in line for line in outside), outside
    typo = errors_of(MINIMAL + "login: [{name: login1, adress: 10.9.0.50}]\n")
    assert any("login[0].adress: unknown key 'adress' (did you mean 'address'?)" in line for line in typo), typo


def test_an_existing_clusters_login_node_needs_its_address():
    text = MINIMAL.replace("compute:", "provider: existing\ncontroller: {address: 10.9.0.2}\ncompute:").replace(
        "  - names: c[1-2]", "  - names: c[1-2]\n    first_address: 10.9.0.3")
    assert [n.role for n in load_text(text + "login: [{name: l1, address: 10.9.0.9}]\n").resolved_nodes()][-1] == "login"
    lines = errors_of(text + "login: [{name: l1}]\n")
    assert any("login[0].address: required with provider existing" in line for line in lines), lines
