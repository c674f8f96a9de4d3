"""Layer 1, nodes: the compute nodes are one image: the same kernel, OS release and packages,
booted with the same kernel parameters, on the same CPU microcode and BIOS, with the same kernel
tunables, CPUs and memory; no node's kernel is tainted by a hardware error or a crash, and each
has the kernel modules the config requires of it. A login node has the compute nodes' versions
of what users build and submit with there (MPI, PMIx, CUDA, Slurm, munge)."""

from __future__ import annotations

import pytest

from pytest_hpcvalidate.capabilities import not_applicable
from pytest_hpcvalidate.hostlist import fold
from pytest_hpcvalidate.probes import nodeimage


@pytest.fixture(scope="session")
def node_images(cluster, hpc_config) -> dict[str, nodeimage.NodeImage | Exception]:
    """{compute node: its kernel, OS release, packages, command line, firmware and tunables, or
    why they could not be read}; every compute node at once."""
    sysctls = tuple(hpc_config.node_image.sysctls)
    outcomes = cluster.map(lambda node: nodeimage.read(node, sysctls), cluster.compute)
    return {name: o.value if o.error is None else o.error for name, o in outcomes.items()}


@pytest.fixture(scope="session")
def readable(node_images, node_spec) -> tuple[dict[str, nodeimage.NodeImage], dict[str, str]]:
    """({compute node: its facts} of the nodes whose facts were read, {node: its config group})."""
    images = {n: i for n, i in node_images.items() if not isinstance(i, Exception)}
    return images, {n: node_spec[n].origin for n in images}


def _read(name: str, node_images) -> nodeimage.NodeImage:
    """``name``'s image facts; where they could not be read, its check fails saying why."""
    mine = node_images[name]
    if isinstance(mine, Exception):
        raise AssertionError(str(mine))
    return mine


def _group_peers(name: str, readable, read) -> tuple[str, list[str]]:
    """(``name``'s config group, the other nodes of it whose facts were read and hold ``read(image)``)."""
    images, groups = readable
    return groups[name], [n for n, i in images.items() if n != name and groups[n] == groups[name] and read(i)]


def _judge_within_group(name: str, readable, differences: dict[str, list[str]], has, facts: str, differs: str,
                        fix: str) -> None:
    """Fail ``name``'s check with ``differences[name]``, naming the other nodes of its group it
    was compared with (those whose ``facts`` were read: ``has(image)``); not applicable when
    there are none."""
    group, peers = _group_peers(name, readable, has)
    if not peers:
        not_applicable(f"{name} is the only node of {group} whose {facts} could be read: nothing to compare with")
    found = differences.get(name)
    assert not found, f"{name} {differs} than the other nodes of {group} ({fold(peers)}): " + "; ".join(found) + f". {fix}"


@pytest.fixture(scope="session")
def image_differences(readable, hpc_config) -> dict[str, list[str]]:
    """{compute node: how it differs from the others} over the nodes whose software was read
    (once for all nodes: the comparison is over the whole cluster)."""
    images, groups = readable
    return nodeimage.differences(images, groups, tuple(hpc_config.node_image.ignore_packages))


def test_node_runs_the_same_kernel_os_and_packages_as_the_others(compute_node, node_images, image_differences,
                                                                 hpc_config):
    """A compute node reinstalled from an older image, or left out of an update, runs another
    kernel, MPI, PMIx or munge than its peers, and jobs fail only where they touch it. Its
    kernel release and OS are compared with every other compute node's, each package's
    version with the other nodes that have it, and which packages it has with the other
    nodes of its config group (``compute[i]``). ``node_image.ignore_packages`` names the
    packages allowed to differ."""
    mine = _read(compute_node.name, node_images)
    if sum(not isinstance(i, Exception) for i in node_images.values()) < 2:
        not_applicable(f"{compute_node.name} is the only compute node whose software could be read: "
                       "nothing to compare it with")
    found = image_differences.get(compute_node.name)
    ignored = hpc_config.node_image.ignore_packages
    assert not found, (
        f"{compute_node.name} runs other software than the other compute nodes: " + "; ".join(found) +
        f". Reinstall or update it to the cluster's image ({mine.tool} package list compared"
        + (", ignoring " + ", ".join(ignored) if ignored else "") + ")")


def test_login_node_runs_the_compute_nodes_mpi_slurm_and_munge(login_node, node_images, hpc_config):
    """Users build their programs on a login node and submit from it: an Open MPI, PMIx, UCX,
    CUDA or NCCL there at another version than the compute nodes' builds programs that fail
    only when they run (ABI, wire-up), and a Slurm or munge at another version speaks another
    protocol to slurmctld. Every package of ``node_image.login_packages`` installed on the
    login node and on compute nodes must be at the compute nodes' version there."""
    patterns = hpc_config.node_image.login_packages
    if not patterns:
        not_applicable("node_image.login_packages is empty: no package is compared")
    image = nodeimage.read(login_node, ())
    compute = {n: i for n, i in node_images.items() if not isinstance(i, Exception)}
    if not compute:
        not_applicable(f"no compute node's packages could be read: nothing to compare {login_node.name} with")
    tools = {i.tool for i in compute.values()}
    if image.tool not in tools or image.tool == "none":
        not_applicable(f"{login_node.name} lists its packages with {image.tool or 'no tool'}, the compute nodes with "
                       f"{', '.join(sorted(tools))}: their versions cannot be compared")
    ignored = tuple(hpc_config.node_image.ignore_packages)
    found, compared = nodeimage.login_differences(image, compute, patterns, ignored)
    if not compared:
        not_applicable(f"no package of node_image.login_packages ({', '.join(patterns)}) "
                       f"is installed on both {login_node.name} and the compute nodes")
    assert not found, (
        f"login node {login_node.name} has other versions than the compute nodes of {len(found)} of the "
        f"{compared} package(s) users build and submit with: {nodeimage.cut_list(found)}. Programs built there "
        f"against them fail on the compute nodes, and a Slurm or munge of another version speaks another protocol "
        f"to slurmctld: update {login_node.name} with the compute nodes' image")


@pytest.fixture(scope="session")
def parameter_differences(readable, hpc_config) -> dict[str, list[str]]:
    """{compute node: how its kernel command line differs from its group's}."""
    images, groups = readable
    return nodeimage.parameter_differences(images, groups, tuple(hpc_config.node_image.ignore_kernel_parameters))


def test_node_boots_with_the_same_kernel_parameters_as_its_group(compute_node, node_images, readable,
                                                                  parameter_differences, hpc_config):
    """A node booted from a stale PXE or GRUB entry runs another cgroup hierarchy
    (``systemd.unified_cgroup_hierarchy``), IOMMU mode, hugepage pool or CPU isolation than
    the nodes beside it: Slurm's cgroup plugin, passthrough or a job's performance then differ
    on that node alone. Its ``/proc/cmdline`` is compared with the other nodes of its config
    group (parameters that name the node, root=, ip=, hostname=, and the boot files, never
    count); ``node_image.ignore_kernel_parameters`` names the ones allowed to differ."""
    mine = _read(compute_node.name, node_images)
    assert mine.cmdline, f"{compute_node.name}: /proc/cmdline read empty: its kernel parameters cannot be compared"
    ignored = hpc_config.node_image.ignore_kernel_parameters
    _judge_within_group(compute_node.name, readable, parameter_differences, lambda i: i.cmdline, "kernel command line",
                        "booted with other kernel parameters",
                        "Boot it with its group's command line (its PXE or GRUB entry)"
                        + (", ignoring " + ", ".join(ignored) if ignored else ""))


@pytest.fixture(scope="session")
def firmware_differences(readable) -> dict[str, list[str]]:
    """{compute node: how its CPU model, microcode or BIOS differs from its group's}."""
    return nodeimage.firmware_differences(*readable)


def test_node_runs_the_same_cpu_microcode_and_bios_as_its_group(compute_node, node_images, readable,
                                                                firmware_differences):
    """A node missed by a firmware campaign runs older microcode or BIOS than the nodes beside
    it (another set of CPU errata and mitigations, other performance), and one whose late
    microcode load reached only some CPUs runs two. Its CPUs' microcode revisions must be one;
    its CPU model and BIOS (vendor, version, date) are compared with the other nodes of its
    config group, its microcode with those of them with the same CPU model."""
    mine = _read(compute_node.name, node_images)
    if not (mine.microcode or mine.bios):
        not_applicable(f"{compute_node.name} exposes neither its CPUs' microcode (/proc/cpuinfo) nor its BIOS "
                       "(/sys/class/dmi/id): nothing to compare")
    found = firmware_differences.get(compute_node.name)
    group = readable[1][compute_node.name]
    assert not found, (
        f"{compute_node.name} runs other firmware than the other nodes of {group}: " + "; ".join(found)
        + ". Update its BIOS or microcode (the microcode package and a reboot) to its group's")


@pytest.fixture(scope="session")
def tunable_differences(readable) -> dict[str, list[str]]:
    """{compute node: how its sysctls and transparent-hugepage settings differ from its group's}."""
    return nodeimage.tunable_differences(*readable)


def test_node_runs_the_same_kernel_tunables_as_its_group(compute_node, node_images, readable, tunable_differences):
    """A node a configuration-management run missed keeps the distribution's tunables while
    its peers run the site's: zone reclaim or NUMA balancing on (memory-bound jobs slow down on
    that node alone), ``kernel.yama.ptrace_scope`` 1 (Open MPI's single-copy CMA between ranks
    fails there), other socket buffers, hugepages, transparent hugepages. The sysctls of
    ``node_image.sysctls`` and the transparent-hugepage settings are compared with the other
    nodes of its config group."""
    mine = _read(compute_node.name, node_images)
    assert mine.tunables, (f"{compute_node.name}: none of its kernel tunables could be read (/proc/sys, "
                           "/sys/kernel/mm/transparent_hugepage)")
    _judge_within_group(compute_node.name, readable, tunable_differences, lambda i: i.tunables, "kernel tunables",
                        "runs other kernel tunables", "Set them as its group has them (sysctl.d, or rerun the "
                        "configuration management that missed it)")


@pytest.fixture(scope="session")
def hardware_differences(readable, hpc_config) -> dict[str, list[str]]:
    """{compute node: how its online CPUs, SMT, NUMA nodes or memory differ from its group's}."""
    return nodeimage.hardware_differences(*readable, hpc_config.node_image.memory_tolerance_pct)


def test_node_has_the_cpus_and_memory_of_its_group(compute_node, node_images, readable, hardware_differences):
    """A node with a failed DIMM, a socket or cores offline, SMT left on or NUMA folded by a
    BIOS setting still meets a conservative slurm.conf (Slurm registers it) but runs jobs
    slower or out of memory where its peers do not. Its online CPUs, NUMA nodes and SMT are
    compared with the other nodes of its config group, its MemTotal with their median within
    ``node_image.memory_tolerance_pct``."""
    mine = _read(compute_node.name, node_images)
    assert nodeimage.count_list(mine.cpus) and mine.memkb.isdigit(), (
        f"{compute_node.name}: its online CPUs (/sys/devices/system/cpu/online: {mine.cpus!r}) or MemTotal "
        f"(/proc/meminfo: {mine.memkb!r}) could not be read")
    _judge_within_group(compute_node.name, readable, hardware_differences, lambda i: i.memkb, "hardware",
                        "has other hardware", "Check its DIMMs, CPUs and BIOS settings (SMT, NUMA), or move it to a "
                        "group of its own")


def test_node_kernel_is_not_tainted_by_a_hardware_error_or_a_crash(compute_node, node_images, hpc_config):
    """A node whose kernel logged a machine check, referenced a bad page, oopsed or locked up
    since it booted is not one to put into production, however well it answers: its taint
    flags (``/proc/sys/kernel/tainted``) may not hold any of ``node_image.forbidden_taints``
    (default B, D, L, M). Proprietary and out-of-tree modules (P, O, E) are normal."""
    mine = _read(compute_node.name, node_images)
    forbidden = hpc_config.node_image.forbidden_taints
    if not forbidden:
        not_applicable("node_image.forbidden_taints is empty: no taint flag is ruled out")
    try:
        flags = nodeimage.taints(mine.tainted)
    except ValueError:
        raise AssertionError(f"{compute_node.name}: /proc/sys/kernel/tainted read {mine.tainted!r}, not a number") \
            from None
    bad = [f"{letter} ({meaning})" for letter, meaning in flags if letter in forbidden]
    assert not bad, (
        f"{compute_node.name}: its kernel is tainted " + ", ".join(bad) + f" (mask {mine.tainted}, all flags: "
        + "".join(letter for letter, _ in flags) + f"). Read the kernel log on {compute_node.name} (dmesg, "
        "journalctl -k) and test its hardware before production; the flags clear only with a reboot")


def test_node_has_the_kernel_modules_it_requires(compute_node, node_images, node_spec, hpc_config):
    """A node whose module did not load at boot (a DKMS build that failed after a kernel
    update, a modules-load.d entry the image lacks) still answers, registers and runs jobs:
    NCCL without ``nvidia_peermem``, MPI without ``ib_umad``, fall back to slower paths without
    an error, and a BeeGFS or Lustre client cannot mount. Each module of
    ``node_image.kernel_modules`` and of its group's ``compute[i].kernel_modules`` must be
    loaded (``/proc/modules``, ``/sys/module``) or built into its kernel (``modules.builtin``).
    Modules are not compared between nodes: they autoload with a node's history."""
    name = compute_node.name
    mine = _read(name, node_images)
    origin = node_spec[name].origin
    required: dict[str, str] = {}
    for where, modules in (("node_image.kernel_modules", hpc_config.node_image.kernel_modules),
                           (f"{origin}.kernel_modules", node_spec[name].kernel_modules)):
        for module in modules:
            required.setdefault(nodeimage.module_name(module), where)
    if not required:
        not_applicable(f"no kernel module is required of {name} (node_image.kernel_modules, {origin}.kernel_modules)")
    assert mine.modules, (f"{name}: its kernel modules could not be read (/proc/modules, /sys/module, modules.builtin): "
                          f"{', '.join(required)} cannot be checked")
    missing = nodeimage.missing_modules(mine, required)
    assert not missing, (
        f"{name}: kernel module(s) " + ", ".join(f"{m} (required by {required[m]})" for m in missing)
        + f" neither loaded nor built into its kernel {mine.kernel}. Load them (modprobe {' '.join(missing)}) and "
        "have them load at boot (/etc/modules-load.d/), or install the package that builds them for this kernel")
