"""Node image facts: parsing the probe's output, and telling which nodes differ from the others."""

import dataclasses
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from pytest_hpcvalidate.probes import nodeimage

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
RECORDED = (FIXTURES / "nodes" / "node-image-debian12.txt").read_text()


def _image(node: str, **changes) -> nodeimage.NodeImage:
    base = nodeimage.parse(node, RECORDED)
    packages = {**base.packages, **changes.pop("packages", {})}
    for gone in changes.pop("removed", ()):
        packages.pop(gone)
    return nodeimage.NodeImage(node, changes.get("kernel", base.kernel), changes.get("os", base.os), base.tool, packages,
                               changes.get("cmdline", base.cmdline))


def test_recorded_debian_node():
    image = nodeimage.parse("c1", RECORDED)
    assert (image.kernel, image.os, image.tool) == ("6.18.44-fc-v1300", "Debian GNU/Linux 12 (bookworm)", "dpkg")
    assert len(image.packages) == 60 and image.packages["adduser"] == "3.134"


def test_rpm_lines_as_the_probe_prints_them():
    """Hand-made in the shape of the probe's rpm branch (no RHEL node here to record one)."""
    image = nodeimage.parse("r1", "KERNEL 5.14.0-427.el9.x86_64\nOS Rocky Linux 9.4 (Blue Onyx)\nTOOL rpm\n"
                                  "PKG\tmunge.x86_64\t0.5.13-13.el9\nPKG\tslurm.x86_64\t23.11.10-1.el9\n")
    assert image.tool == "rpm" and image.packages == {"munge.x86_64": "0.5.13-13.el9", "slurm.x86_64": "23.11.10-1.el9"}


def test_the_one_node_left_behind_is_named_and_its_peers_are_not():
    images = {n: _image(n) for n in ("c1", "c2", "c4")}
    images["c3"] = _image("c3", kernel="6.1.0-18-amd64", packages={"adduser": "3.131"}, removed=("apt",))
    found = nodeimage.differences(images, dict.fromkeys(images, "compute[0]"))
    assert list(found) == ["c3"]
    assert found["c3"] == ["kernel 6.1.0-18-amd64 (6.18.44-fc-v1300 on c[1-2,4])",
                           "1 package version(s) differ: adduser 3.131 (3.134 on c[1-2,4])",
                           "lacks 1 package(s) other nodes of its group have: apt (on c[1-2,4])"]


def test_packages_only_another_group_has_are_not_a_difference():
    """A GPU group carries the driver packages a CPU group does not; a version differs across groups still."""
    images = {n: _image(n, packages={"nvidia-driver": "535.261.03-1"}) for n in ("g1", "g2")}
    images |= {n: _image(n) for n in ("c1", "c2")}
    groups = {"g1": "compute[0]", "g2": "compute[0]", "c1": "compute[1]", "c2": "compute[1]"}
    assert nodeimage.differences(images, groups) == {}
    images["g2"] = _image("g2", packages={"nvidia-driver": "525.147.05-1"})
    found = nodeimage.differences(images, groups)
    assert set(found) == {"g1", "g2"}  # two nodes, two versions: neither is the majority
    assert found["g2"] == ["1 package version(s) differ: nvidia-driver 525.147.05-1 (535.261.03-1 on g1)"]


def test_ignored_packages_and_nodes_without_a_package_tool():
    images = {n: _image(n) for n in ("c1", "c2", "c3")}
    images["c3"] = _image("c3", packages={"adduser": "3.131", "site-node-id": "c3"})
    assert nodeimage.differences(images, dict.fromkeys(images, "g"), ignore=("adduser", "site-*")) == {}
    bare = nodeimage.NodeImage("c4", images["c1"].kernel, images["c1"].os, "none", {})
    assert nodeimage.differences({**images, "c4": bare}, dict.fromkeys(images, "g"), ignore=("adduser", "site-*")) == {}


def test_a_long_list_is_cut_with_a_count():
    images = {n: _image(n) for n in ("c1", "c2")}
    images["c3"] = _image("c3", removed=tuple(list(images["c1"].packages)[:12]))
    (line,) = nodeimage.differences(images, dict.fromkeys(images, "g"))["c3"]
    assert line.startswith("lacks 12 package(s)") and line.endswith("and 4 more")


@given(nodes=st.integers(3, 9), odd=st.integers(0, 8), version=st.text("0123456789.-+~", min_size=1, max_size=8))
def test_exactly_the_odd_node_is_named(nodes, odd, version):
    names = [f"n{i}" for i in range(nodes)]
    odd_name = names[odd % nodes]
    base = _image("n0")
    images = {n: nodeimage.NodeImage(n, base.kernel, base.os, base.tool, dict(base.packages)) for n in names}
    images[odd_name].packages["adduser"] = version
    found = nodeimage.differences(images, dict.fromkeys(names, "g"))
    if version == "3.134":
        assert found == {}
    else:
        assert list(found) == [odd_name] and found[odd_name][0].startswith(f"1 package version(s) differ: adduser {version} ")


# ---------------------------------------------------------------- login nodes
#: a compute node's packages of the kinds a login node shares with it, and one it alone has
STACK = {"openmpi-bin": "4.1.4-3", "libpmix2": "4.2.2-1", "slurm-client": "22.05.8-4+deb12u3", "munge": "0.5.15-2",
         "slurmd": "22.05.8-4+deb12u3", "adduser": "3.134"}


def _stack(node: str, tool: str = "dpkg", **packages) -> nodeimage.NodeImage:
    merged = {k: v for k, v in {**STACK, **packages}.items() if v is not None}
    return nodeimage.NodeImage(node, "6.1.0-18-amd64", "Debian", tool, merged)


def _login(**packages) -> nodeimage.NodeImage:
    return _stack("login1", slurmd=None, **{"gcc-12": "12.2.0-14", **packages})


def test_a_login_node_with_the_compute_nodes_stack_compares_only_what_both_have():
    compute = {n: _stack(n) for n in ("c1", "c2", "c3")}
    found, compared = nodeimage.login_differences(_login(), compute, nodeimage.LOGIN_PACKAGES)
    # openmpi-bin, libpmix2, slurm-client, munge: not slurmd (compute only), gcc-12 (login only), adduser (no pattern)
    assert (found, compared) == ([], 4)


def test_a_login_node_left_out_of_an_mpi_and_slurm_update_is_told_the_compute_nodes_versions():
    compute = {n: _stack(n, **{"openmpi-bin": "4.1.5-1", "slurm-client": "23.11.4-1"}) for n in ("c1", "c2")}
    compute["c3"] = _stack("c3", **{"openmpi-bin": "4.1.5-1", "slurm-client": "23.11.4-1", "munge": "0.5.14-1"})
    found, compared = nodeimage.login_differences(_login(), compute, nodeimage.LOGIN_PACKAGES)
    # munge: most compute nodes have 0.5.15-2 as the login node does; c3's is c3's own problem
    assert found == ["openmpi-bin 4.1.4-3 (4.1.5-1 on c[1-3])", "slurm-client 22.05.8-4+deb12u3 (23.11.4-1 on c[1-3])"]
    assert compared == 4


def test_where_the_compute_nodes_disagree_any_of_their_versions_will_do():
    compute = {"c1": _stack("c1"), "c2": _stack("c2", **{"openmpi-bin": "4.1.5-1"})}
    assert nodeimage.login_differences(_login(), compute, ("*openmpi*",)) == ([], 1)
    found, _ = nodeimage.login_differences(_login(**{"openmpi-bin": "4.1.6-1"}), compute, ("*openmpi*",))
    assert found == ["openmpi-bin 4.1.6-1 (4.1.4-3 on c1; 4.1.5-1 on c2)"]


def test_ignored_packages_and_another_package_tool_are_not_compared():
    compute = {n: _stack(n, munge="0.5.16-1") for n in ("c1", "c2")}
    assert nodeimage.login_differences(_login(), compute, nodeimage.LOGIN_PACKAGES, ignore=("mun*",)) == ([], 3)
    rpm_login = _stack("login1", tool="rpm", munge="0.5.13-13.el9")
    assert nodeimage.login_differences(rpm_login, compute, nodeimage.LOGIN_PACKAGES) == ([], 0)


@given(version=st.text("0123456789.-+~:", min_size=1, max_size=10), computes=st.integers(1, 6))
def test_the_login_node_fails_exactly_when_its_version_is_not_the_compute_nodes(version, computes):
    compute = {f"c{i}": _stack(f"c{i}") for i in range(1, computes + 1)}
    found, compared = nodeimage.login_differences(_login(munge=version), compute, ("munge",))
    assert compared == 1
    assert found == ([] if version == STACK["munge"] else [f"munge {version} ({STACK['munge']} on {list(compute)[0] if computes == 1 else f'c[1-{computes}]'})"])


# ---------------------------------------------------------------- kernel parameters
#: a compute node's command line as GRUB boots it (root= and BOOT_IMAGE name the node's own disk and kernel)
CMDLINE = ("BOOT_IMAGE=/boot/vmlinuz-6.1.0-18-amd64 root=UUID=0b6c7e3a ro quiet intel_iommu=on iommu=pt "
           "hugepages=1024 console=tty0 console=ttyS0,115200 dyndbg=\"file drivers/pci/* +p\" -- single")


def _booted(**lines) -> dict[str, nodeimage.NodeImage]:
    return {n: nodeimage.NodeImage(n, "6.1.0-18-amd64", "Debian", "dpkg", {}, line) for n, line in lines.items()}


def test_recorded_command_line():
    image = nodeimage.parse("c1", RECORDED)
    assert image.cmdline.startswith("mitigations=auto,no_guest_host,no_guest_guest console=ttyS0 quiet")
    params = nodeimage.kernel_parameters(image.cmdline)
    assert params["console"] == "ttyS0" and params["quiet"] == "" and "--firecracker-init" not in params


def test_kernel_parameters_leave_out_the_node_its_files_and_inits_arguments():
    params = nodeimage.kernel_parameters(CMDLINE)
    assert params == {"ro": "", "quiet": "", "intel_iommu": "on", "iommu": "pt", "hugepages": "1024",
                      "console": "tty0,ttyS0,115200", "dyndbg": '"file drivers/pci/* +p"'}
    assert set(nodeimage.kernel_parameters(CMDLINE, ignore=("console", "dyn*"))) == {
        "ro", "quiet", "intel_iommu", "iommu", "hugepages"}


def test_the_node_booted_from_a_stale_entry_is_named_with_what_differs():
    stale = CMDLINE.replace(" iommu=pt", "").replace("hugepages=1024", "hugepages=512") + " "
    stale = stale.replace("quiet", "quiet systemd.unified_cgroup_hierarchy=0")
    images = _booted(c1=CMDLINE.replace("0b6c7e3a", "9f1d"), c2=CMDLINE, c3=stale, c4=CMDLINE)
    found = nodeimage.parameter_differences(images, dict.fromkeys(images, "compute[0]"))
    assert found == {"c3": ["hugepages=512 (1024 on c[1-2,4])", "lacks iommu=pt (on c[1-2,4])",
                            "boots with systemd.unified_cgroup_hierarchy=0 (not on c[1-2,4]) as well"]}


def test_kernel_parameters_are_compared_within_a_group_only():
    gpu = CMDLINE + " pci=realloc"
    images = _booted(g1=gpu, g2=gpu, c1=CMDLINE.replace(" intel_iommu=on iommu=pt", ""), c2=CMDLINE.replace(
        " intel_iommu=on iommu=pt", ""), c3=CMDLINE)
    groups = {"g1": "compute[0]", "g2": "compute[0]", "c1": "compute[1]", "c2": "compute[1]", "c3": "compute[1]"}
    found = nodeimage.parameter_differences(images, groups)
    assert found == {"c3": ["boots with intel_iommu=on (not on c[1-2]), iommu=pt (not on c[1-2]) as well"]}
    assert nodeimage.parameter_differences(images, groups, ignore=("*iommu",)) == {}
    assert nodeimage.parameter_differences({**images, "c4": nodeimage.NodeImage("c4")}, groups) == found


@given(nodes=st.integers(3, 9), odd=st.integers(0, 8),
       value=st.text("abcdefghijklmnopqrstuvwxyz0123456789,._-", min_size=1, max_size=8))
def test_exactly_the_node_with_another_parameter_value_is_named(nodes, odd, value):
    names = [f"n{i}" for i in range(nodes)]
    odd_name = names[odd % nodes]
    lines = dict.fromkeys(names, CMDLINE) | {odd_name: CMDLINE.replace("hugepages=1024", f"hugepages={value}")}
    found = nodeimage.parameter_differences(_booted(**lines), dict.fromkeys(names, "g"))
    if value == "1024":
        assert found == {}
    else:
        assert found == {odd_name: [f"hugepages={value} (1024 on {nodeimage.fold(sorted(set(names) - {odd_name}))})"]}


# ---------------------------------------------------------------- CPU, microcode, BIOS
def _firmware(node: str, cpu="AMD EPYC 9654 96-Core Processor", microcode="0xa101148",
              bios="Dell Inc. 2.1.0 03/04/2024") -> nodeimage.NodeImage:
    return nodeimage.NodeImage(node, "6.1.0-18-amd64", "Debian", "dpkg", {}, "", cpu, microcode, bios)


def test_recorded_cpu_and_microcode_and_a_vm_without_dmi():
    image = nodeimage.parse("c1", RECORDED)
    assert (image.cpu, image.microcode, image.bios) == ("AMD EPYC", "0x1000065", "")


def test_the_node_missed_by_a_firmware_campaign_is_named():
    images = {n: _firmware(n) for n in ("c1", "c2", "c3", "c4")}
    images["c2"] = _firmware("c2", microcode="0xa10113e", bios="Dell Inc. 1.6.2 01/10/2023")
    images["c4"] = _firmware("c4", microcode="0xa101148|0xa10113e")
    found = nodeimage.firmware_differences(images, dict.fromkeys(images, "compute[0]"))
    assert found == {
        "c2": ["BIOS Dell Inc. 1.6.2 01/10/2023 (Dell Inc. 2.1.0 03/04/2024 on c[1,3-4])",
               "microcode 0xa10113e (0xa101148 on c[1,3])"],
        "c4": ["its CPUs run different microcode (0xa101148, 0xa10113e): a late microcode load reached only some of them"]}


def test_microcode_is_compared_among_nodes_of_one_cpu_model_and_groups_apart():
    images = {"c1": _firmware("c1"), "c2": _firmware("c2"), "c3": _firmware("c3", cpu="AMD EPYC 9554", microcode="0x1"),
              "g1": _firmware("g1", bios=""), "g2": _firmware("g2", microcode="", bios="")}
    groups = {"c1": "compute[0]", "c2": "compute[0]", "c3": "compute[0]", "g1": "compute[1]", "g2": "compute[1]"}
    found = nodeimage.firmware_differences(images, groups)
    # c3's other CPU model is told, its microcode (of another model) is not; g2 exposes nothing to compare
    assert found == {"c3": ["CPU AMD EPYC 9554 (AMD EPYC 9654 96-Core Processor on c[1-2])"]}


def test_edit_cpuinfo_changes_the_microcode_of_the_cpus_named():
    from pytest_hpcvalidate.faults.nodes import edit_cpuinfo
    text = "processor\t: 0\nmicrocode\t: 0xa101148\n\nprocessor\t: 1\nmicrocode\t: 0xa101148\n"
    assert edit_cpuinfo(text, "0x1", (1,)) == "processor\t: 0\nmicrocode\t: 0xa101148\n\nprocessor\t: 1\nmicrocode\t: 0x1"
    assert edit_cpuinfo(text, "0x1").count("microcode\t: 0x1") == 2
    import pytest
    with pytest.raises(ValueError, match="no microcode line"):
        edit_cpuinfo("processor\t: 0\nBogoMIPS\t: 50.00\n", "0x1")


@given(nodes=st.integers(3, 9), odd=st.integers(0, 8), revision=st.from_regex(r"0x[0-9a-f]{1,8}", fullmatch=True))
def test_exactly_the_node_with_other_microcode_is_named(nodes, odd, revision):
    names = [f"n{i}" for i in range(nodes)]
    odd_name = names[odd % nodes]
    images = {n: _firmware(n) for n in names} | {odd_name: _firmware(odd_name, microcode=revision)}
    found = nodeimage.firmware_differences(images, dict.fromkeys(names, "g"))
    others = nodeimage.fold(sorted(set(names) - {odd_name}))
    assert found == ({} if revision == "0xa101148" else {odd_name: [f"microcode {revision} (0xa101148 on {others})"]})


# ---------------------------------------------------------------- kernel tunables
def _tuned(node: str, **changed) -> nodeimage.NodeImage:
    tunables = dict(nodeimage.parse(node, RECORDED).tunables)
    for name, value in changed.items():
        name = name.replace("__", ".")
        if value is None:
            tunables.pop(name)
        else:
            tunables[name] = value
    return nodeimage.NodeImage(node, tunables=tunables)


def test_recorded_tunables():
    tunables = nodeimage.parse("c1", RECORDED).tunables
    assert tunables["vm.zone_reclaim_mode"] == "0" and tunables["net.ipv4.tcp_rmem"] == "4096 131072 33554432"
    assert tunables["transparent_hugepage.enabled"] == "madvise"
    assert "kernel.yama.ptrace_scope" not in tunables  # no Yama in this kernel: the probe leaves it out


def test_the_node_a_configuration_run_missed_is_named_with_its_peers_values():
    images = {n: _tuned(n, vm__swappiness="10", kernel__numa_balancing="0") for n in ("c1", "c2", "c3")}
    images["c4"] = _tuned("c4", vm__swappiness="60", kernel__numa_balancing="1", vm__nr_hugepages=None,
                          kernel__yama__ptrace_scope="1")
    found = nodeimage.tunable_differences(images, dict.fromkeys(images, "compute[0]"))
    assert found == {"c4": ["kernel.numa_balancing=1 (0 on c[1-3])", "vm.swappiness=60 (10 on c[1-3])",
                            "lacks vm.nr_hugepages=0 (on c[1-3])",
                            "has kernel.yama.ptrace_scope=1 (not on c[1-3]) as well"]}
    assert nodeimage.tunable_differences(images, {"c1": "a", "c2": "a", "c3": "a", "c4": "b"}) == {}


def test_the_tunables_command_reads_what_is_asked_and_exits_0():
    import subprocess
    out = subprocess.run(["bash", "-c", nodeimage.tunables_command(("vm.swappiness", "no.such.sysctl"))],
                         capture_output=True, text=True, check=True).stdout
    tunables = nodeimage.parse("here", out).tunables
    assert set(tunables) - {"transparent_hugepage.enabled", "transparent_hugepage.defrag"} == {"vm.swappiness"}
    assert tunables["vm.swappiness"] == open("/proc/sys/vm/swappiness").read().strip()


# ---------------------------------------------------------------- CPUs, SMT, NUMA, memory
def _hw(node: str, cpus="0-127", smt="1", numa="0-1", memkb="527992048") -> nodeimage.NodeImage:
    return nodeimage.NodeImage(node, cpus=cpus, smt=smt, numa=numa, memkb=memkb)


def test_recorded_cpus_and_memory():
    image = nodeimage.parse("c1", RECORDED)
    assert (image.cpus, image.smt, image.numa, image.memkb) == ("0-1", "0", "0", "24683772")


def test_count_list():
    assert [nodeimage.count_list(x) for x in ("0-63", "0-63,128-191", "0", "", "x-y")] == [64, 128, 1, None, None]


def test_the_node_with_a_lost_dimm_and_cores_offline_is_named():
    images = {n: _hw(n) for n in ("c1", "c2", "c3", "c4")}
    images["c2"] = _hw("c2", cpus="0-63", memkb=str(int(527992048 * 15 / 16)))
    images["c3"] = _hw("c3", smt="0", numa="0", memkb="527990000")  # within the tolerance
    found = nodeimage.hardware_differences(images, dict.fromkeys(images, "g"))
    assert found == {
        "c2": ["online CPUs 64 (128 on c[1,3-4])", "memory 472.1 GiB, 6.2 % less than its group's median "
               "503.5 GiB (c[1,3-4]; tolerance 2 %)"],
        "c3": ["NUMA nodes 1 (2 on c[1-2,4])", "SMT active 0 (1 on c[1-2,4])"]}
    assert nodeimage.hardware_differences(images, dict.fromkeys(images, "g"), memory_tolerance_pct=10) == {
        "c2": ["online CPUs 64 (128 on c[1,3-4])"], "c3": ["NUMA nodes 1 (2 on c[1-2,4])", "SMT active 0 (1 on c[1-2,4])"]}


def test_hardware_of_other_groups_and_what_a_node_does_not_expose_is_not_compared():
    images = {"c1": _hw("c1"), "c2": _hw("c2", smt="", numa=""), "g1": _hw("g1", cpus="0-31", memkb="1000"),
              "g2": _hw("g2", cpus="0-31", memkb="1000")}
    groups = {"c1": "compute[0]", "c2": "compute[0]", "g1": "compute[1]", "g2": "compute[1]"}
    assert nodeimage.hardware_differences(images, groups) == {}


@given(nodes=st.integers(3, 9), odd=st.integers(0, 8), fraction=st.floats(0.5, 1.5))
def test_memory_is_judged_against_the_median_and_the_tolerance(nodes, odd, fraction):
    names = [f"n{i}" for i in range(nodes)]
    odd_name = names[odd % nodes]
    base = 268435456
    images = {n: _hw(n, memkb=str(base)) for n in names} | {odd_name: _hw(odd_name, memkb=str(int(base * fraction)))}
    found = nodeimage.hardware_differences(images, dict.fromkeys(names, "g"))
    off = abs(int(base * fraction) - base) / base * 100
    if off > 2.0:
        assert list(found) == [odd_name] and found[odd_name][0].startswith("memory ")
    else:
        assert found == {}


# ---------------------------------------------------------------- kernel taint
def test_recorded_kernel_is_untainted():
    assert nodeimage.taints(nodeimage.parse("c1", RECORDED).tainted) == []


def test_taint_flags_by_bit():
    # 4609 = P (bit 0) + W (bit 9) + O (bit 12), a node with the NVIDIA driver that logged a warning
    assert [letter for letter, _ in nodeimage.taints("4609")] == ["P", "W", "O"]
    assert nodeimage.taints("16") == [("M", "the processor reported a machine check exception")]
    assert nodeimage.taints(str(1 << 40))[-1] == ("?", "bit 40")
    import pytest
    with pytest.raises(ValueError):
        nodeimage.taints("")


@given(st.sets(st.integers(0, len(nodeimage.TAINT_FLAGS) - 1)))
def test_every_set_bit_is_one_flag(bits):
    flags = nodeimage.taints(str(sum(1 << b for b in bits)))
    assert [letter for letter, _ in flags] == [nodeimage.TAINT_FLAGS[b][0] for b in sorted(bits)]


# ---------------------------------------------------------------- kernel modules
def test_recorded_modules_are_what_sys_module_lists():
    modules = nodeimage.parse("c1", RECORDED).modules.split()
    assert {"bridge", "fuse", "overlay", "ipv6"} <= set(modules)
    assert modules == sorted(set(modules)) and not any("-" in m for m in modules)


def test_missing_modules_in_the_order_required_once_each_either_spelling():
    image = nodeimage.parse("c1", RECORDED)
    assert nodeimage.missing_modules(image, ["bridge", "fuse"]) == []
    assert nodeimage.missing_modules(image, ["nvidia-peermem", "bridge", "ib_umad", "nvidia_peermem"]) == [
        "nvidia_peermem", "ib_umad"]
    assert nodeimage.missing_modules(nodeimage.NodeImage("c1"), ["fuse"]) == ["fuse"]


@given(st.sets(st.from_regex(r"[a-z][a-z0-9]{0,5}(_[a-z0-9]{1,4})?", fullmatch=True), max_size=8),
       st.sets(st.from_regex(r"[a-z][a-z0-9]{0,5}(_[a-z0-9]{1,4})?", fullmatch=True), max_size=8))
def test_a_module_is_missing_exactly_when_the_node_lacks_it(have, required):
    image = nodeimage.NodeImage("c1", modules=" ".join(sorted(have)))
    dashed = [r.replace("_", "-") for r in sorted(required)]
    assert set(nodeimage.missing_modules(image, dashed)) == required - have


def test_the_lines_of_proc_modules_and_modules_builtin_name_their_module():
    from pytest_hpcvalidate.faults.nodes import _listed_module
    assert _listed_module("nvidia_peermem 16384 0 - Live 0x0000000000000000 (POE)") == "nvidia_peermem"
    assert _listed_module("kernel/drivers/infiniband/core/ib_umad.ko") == "ib_umad"
    assert _listed_module("kernel/drivers/hid/hid-generic.ko") == "hid_generic"


def test_a_node_left_with_swap_on_is_named_within_its_group():
    base = nodeimage.parse("c1", RECORDED)
    assert base.swapkb == "0"
    images = {n: dataclasses.replace(base, node=n) for n in ("c1", "c2", "c3")}
    images["c2"] = dataclasses.replace(images["c2"], swapkb="8388604")
    groups = {"c1": "compute[0]", "c2": "compute[0]", "c3": "compute[0]"}
    assert nodeimage.hardware_differences(images, groups) == {"c2": ["swap on (off on c[1,3])"]}
    images["c3"] = dataclasses.replace(images["c3"], swapkb="")  # not exposed: not compared
    assert nodeimage.hardware_differences(images, groups) == {"c1": ["swap off (on on c2)"], "c2": ["swap on (off on c1)"]}
