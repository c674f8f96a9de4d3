"""Every core check goes red when the thing it checks is broken — and names the node.

One real local cluster (1 controller + 3 compute nodes, two with simulated GPUs) serves the
module. Each test breaks one thing with ``pytest_hpcvalidate.faults``, runs the shipped suite
checks against the running cluster through the plugin (``--hpc-reuse``), asserts which tests
fail and what their messages say, and repairs the fault. The first test proves the healthy
cluster passes every check, so a red result below is the fault's doing.
"""

from __future__ import annotations

import contextlib
import re
import resource
from pathlib import Path

import clusterkit
import pytest
import yaml

from pytest_hpcvalidate import faults
from pytest_hpcvalidate.faults import network as netfaults
from pytest_hpcvalidate.faults import nodes as nodefaults
from pytest_hpcvalidate.faults import slurm as slurmfaults
from pytest_hpcvalidate.probes.nodeimage import count_list
from pytest_hpcvalidate.providers.local.engine import host_cpu_layout

#: the most locked memory this machine lets a process have (a container without
#: CAP_SYS_RESOURCE cannot give slurmd more than its own hard limit): what jobs must get
_, _MEMLOCK_HARD = resource.getrlimit(resource.RLIMIT_MEMLOCK)
MEMLOCK = "unlimited" if _MEMLOCK_HARD == resource.RLIM_INFINITY else _MEMLOCK_HARD // 1024
#: this machine's online CPUs, which every node of a local cluster sees
ONLINE_CPUS = clusterkit.online_cpus()
pytestmark = [pytest.mark.integration, clusterkit.needs_local]

#: a kernel module this machine has (loaded or built in), required of compute[0]; every node
#: requires ``bridge``: the local provider's cluster network is a Linux bridge
GROUP_MODULE = next((m for m in ("fuse", "overlay", "loop", "ipv6") if Path("/sys/module", m).is_dir()), "bridge")

#: the burst check's tasks: one per CPU of the three nodes. A healthy burst of them ends within
#: a few seconds (one scheduling pass: 80-120 jobs/min here, 30 is 12 s); one whose every job is
#: followed by a 20 s epilog takes at least 20 s (at most 18 jobs/min; 20.9 s idle), within the
#: time a burst may take here (with a 25 s epilog a loaded CI machine needed more than 30 s)
BURST, BURST_PER_MIN, EPILOG_S = 6, 30, 20
BURST_S_MAX = 45

BODY = {
    "controller": {"name": "ctl", "cpus": 1, "memory_mb": 512},
    "compute": [
        {"names": "g[1-2]", "cpus": 2, "memory_mb": 1024, "gpus": {"count": 2, "type": "sim"},
         "kernel_modules": [GROUP_MODULE], "features": ["gpu"]},
        {"names": "c1", "cpus": 2, "memory_mb": 1024, "features": ["cpu"]},
    ],
    "slurm": {"gres_types": ["gpu"], "job_shape_examples": 3, "job_memlock": MEMLOCK, "users": ["hpcv"],
              "burst_jobs": BURST,
              "partitions": [{"name": "all", "nodes": "ALL", "default": True, "max_time": "720"}]},  # minutes: Slurm prints 12:00:00
    # timing thresholds with room for a loaded 2-core CI machine: these tests prove which
    # check a fault turns red, not how fast this machine is (bench/ measures that)
    "node_image": {"kernel_modules": ["bridge"]},
    "thresholds": {"latency_p50_ms_max": 10, "latency_p99_ms_max": 50, "mpi_latency_us_max": 5000,
                   "mpi_bandwidth_mibps_min": 10, "burst_jobs_per_min_min": BURST_PER_MIN,
                   "burst_s_max": BURST_S_MAX},
}


broken = clusterkit.module_cluster("f", BODY, "broken")
run_checks, failures = clusterkit.run_checks, clusterkit.failures


def test_healthy_cluster_passes_every_core_check(broken, pytester):
    _, path = broken
    results = run_checks(pytester, path, "l1_nodes", "l1_network", "l2_slurm", "l3_gres", "l3_cgroup", "l4_mpi")
    assert len(results) > 40
    assert failures(results) == {}


def test_slurmd_stopped_fails_registration_naming_the_node(broken, pytester):
    engine, path = broken
    with slurmfaults.slurmd_stopped(engine, "g2"):
        results = run_checks(pytester, path, "l2_slurm/test_registration.py::test_node_registered_and_usable")
    failed = failures(results)
    assert list(failed) == ["test_node_registered_and_usable[g2]"]
    assert "g2 is" in failed["test_node_registered_and_usable[g2]"]
    assert "NOT_RESPONDING" in failed["test_node_registered_and_usable[g2]"]


def test_drained_node_fails_with_its_reason(broken, pytester):
    engine, path = broken
    with slurmfaults.drained(engine, "c1", reason="bad DIMM slot 3"):
        results = run_checks(pytester, path, "l2_slurm/test_registration.py::test_node_registered_and_usable")
    failed = failures(results)
    assert list(failed) == ["test_node_registered_and_usable[c1]"]
    assert "DRAIN" in failed["test_node_registered_and_usable[c1]"]
    assert "Reason=bad DIMM slot 3" in failed["test_node_registered_and_usable[c1]"]


def test_munge_key_differs_on_one_node(broken, pytester):
    engine, path = broken
    with slurmfaults.munge_key_differs(engine, "g1"):
        results = run_checks(pytester, path, "l2_slurm/test_registration.py::test_munge_credential_from_node_decodes_on_controller",
                             "l2_slurm/test_registration.py::test_munge_credential_from_controller_decodes_on_node")
    failed = failures(results)
    assert sorted(failed) == ["test_munge_credential_from_controller_decodes_on_node[g1]",
                              "test_munge_credential_from_node_decodes_on_controller[g1]"]
    msg = failed["test_munge_credential_from_node_decodes_on_controller[g1]"]
    assert "made on g1 does not decode on ctl" in msg and "Invalid credential" in msg


def test_munge_key_readable_by_others(broken, pytester):
    engine, path = broken
    with slurmfaults.munge_key_mode(engine, "c1", 0o644):
        results = run_checks(pytester, path, "l2_slurm/test_registration.py::test_munge_key_is_private_to_munged")
    failed = failures(results)
    assert list(failed) == ["test_munge_key_is_private_to_munged[c1]"]
    assert "mode 0644, must be 0400 or 0600" in failed["test_munge_key_is_private_to_munged[c1]"]


def test_nodes_left_out_of_an_update(broken, pytester):
    """c1 boots another kernel; on g2 dpkg says Open MPI is at another version and munge is
    gone. c1 is told its kernel differs from g[1-2]'s; g2 that its openmpi-bin differs from
    the one c1 and g1 have and that it lacks munge, which g1, the other node of its group,
    has; g1 that it has a package its group's other node lacks (with two nodes, neither is
    the majority)."""
    engine, path = broken
    check = "test_node_runs_the_same_kernel_os_and_packages_as_the_others"
    with nodefaults.kernel_release(engine, "c1", "6.1.0-99-amd64"), \
            nodefaults.packages_differ(engine, "g2", {"openmpi-bin": "4.1.4-99"}, removed=("munge",)):
        failed = failures(run_checks(pytester, path, "l1_nodes"))
    assert set(failed) == {f"{check}[{n}]" for n in ("g1", "g2", "c1")}
    assert re.search(r"c1 runs other software than the other compute nodes: kernel 6\.1\.0-99-amd64 \(\S+ on g\[1-2\]\)\. "
                     r"Reinstall or update it", failed[f"{check}[c1]"]), failed[f"{check}[c1]"]
    g2 = failed[f"{check}[g2]"]
    assert re.search(r"1 package version\(s\) differ: openmpi-bin 4\.1\.4-99 \(\S+ on c1,g1\)", g2), g2
    assert "lacks 1 package(s) other nodes of its group have: munge (on g1)" in g2, g2
    assert "has 1 package(s) other nodes of its group lack: munge (not on g2)" in failed[f"{check}[g1]"]
    said = {n: re.search(r"AssertionError: (.*)", failed[f"{check}[{n}]"]).group(1) for n in ("g1", "g2")}
    assert "kernel" not in said["g1"] and "kernel" not in said["g2"], said


def test_node_booted_from_a_stale_boot_entry(broken, pytester):
    """g2 boots on cgroup v1 and another console than g1, the other node of its group; c1,
    alone in its group, has nothing to be compared with. With two nodes neither is the
    majority: both are named, each with what the other has. Then g2's command line reads
    empty: g2 fails saying so."""
    engine, path = broken
    check = "test_node_boots_with_the_same_kernel_parameters_as_its_group"

    def stale(line: str) -> str:
        assert "console=ttyS0" in line, line
        return line.replace("console=ttyS0", "console=tty0 systemd.unified_cgroup_hierarchy=0", 1)

    with nodefaults.booted_with(engine, "g2", stale):
        results = run_checks(pytester, path, f"l1_nodes/test_image.py::{check}")
    assert {test: outcome for test, (outcome, _) in results.items()} == {
        f"{check}[g1]": "failed", f"{check}[g2]": "failed", f"{check}[c1]": "skipped"}
    failed = failures(results)
    assert re.search(r"g2 booted with other kernel parameters than the other nodes of compute\[0\] \(g1\): "
                     r"console=tty0 \(ttyS0 on g1\); boots with systemd\.unified_cgroup_hierarchy=0 \(not on g1\) as "
                     r"well\. Boot it with its group's command line", failed[f"{check}[g2]"]), failed[f"{check}[g2]"]
    assert "console=ttyS0 (tty0 on g2); lacks systemd.unified_cgroup_hierarchy=0 (on g2)" in failed[f"{check}[g1]"]
    # a command line that reads empty is not compared away: that node fails, its peer has no one left
    with nodefaults.booted_with(engine, "g2", lambda line: ""):
        results = run_checks(pytester, path, f"l1_nodes/test_image.py::{check}")
    assert {test: outcome for test, (outcome, _) in results.items()} == {
        f"{check}[g1]": "skipped", f"{check}[g2]": "failed", f"{check}[c1]": "skipped"}
    assert "g2: /proc/cmdline read empty" in failures(results)[f"{check}[g2]"]


def test_nodes_missed_by_a_firmware_campaign(broken, pytester):
    """g2's CPUs run older microcode than g1's (the other node of its group: both are named,
    neither being the majority); on c1, alone in its group, only CPU 0 took the new one."""
    engine, path = broken
    check = "test_node_runs_the_same_cpu_microcode_and_bios_as_its_group"
    cpuinfo = Path("/proc/cpuinfo").read_text()
    current = re.findall(r"^microcode\s*:\s*(\S+)", cpuinfo, flags=re.M)
    if not current:
        pytest.skip("this machine's /proc/cpuinfo has no microcode line (not x86?): no microcode to change")
    several = len(current) > 1
    with nodefaults.microcode(engine, "g2", "0x0999999"), nodefaults.microcode(engine, "c1", "0x0999999", cpus=(0,)):
        results = run_checks(pytester, path, f"l1_nodes/test_image.py::{check}")
    assert {test: outcome for test, (outcome, _) in results.items()} == {
        f"{check}[g1]": "failed", f"{check}[g2]": "failed", f"{check}[c1]": "failed" if several else "passed"}
    failed = failures(results)
    assert (f"g2 runs other firmware than the other nodes of compute[0]: microcode 0x0999999 ({current[0]} on g1). "
            f"Update its BIOS or microcode") in failed[f"{check}[g2]"], failed[f"{check}[g2]"]
    assert f"microcode {current[0]} (0x0999999 on g2)" in failed[f"{check}[g1]"]
    if several:
        assert (f"c1 runs other firmware than the other nodes of compute[1]: its CPUs run different microcode "
                f"(0x0999999, {current[0]}): a late microcode load reached only some of them") in failed[f"{check}[c1]"]


def test_node_a_configuration_run_missed(broken, pytester):
    """On g2 zone reclaim is on and transparent hugepages are always used, while g1, the other
    node of its group, keeps this machine's settings: both are named (neither is the
    majority), each with the other's values; c1, alone in its group, is not applicable."""
    engine, path = broken
    check = "test_node_runs_the_same_kernel_tunables_as_its_group"
    thp = re.search(r"\[(\w+)\]", Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()).group(1)
    other = "always" if thp != "always" else "never"
    reclaim = Path("/proc/sys/vm/zone_reclaim_mode").read_text().strip()
    with nodefaults.sysctl(engine, "g2", "vm.zone_reclaim_mode", "1" if reclaim != "1" else "0"), \
            nodefaults.transparent_hugepages(engine, "g2", "enabled", other):
        results = run_checks(pytester, path, f"l1_nodes/test_image.py::{check}")
    assert {test: outcome for test, (outcome, _) in results.items()} == {
        f"{check}[g1]": "failed", f"{check}[g2]": "failed", f"{check}[c1]": "skipped"}
    failed = failures(results)
    assert (f"g2 runs other kernel tunables than the other nodes of compute[0] (g1): transparent_hugepage.enabled="
            f"{other} ({thp} on g1); vm.zone_reclaim_mode={'1' if reclaim != '1' else '0'} ({reclaim} on g1). "
            f"Set them as its group has them") in failed[f"{check}[g2]"], failed[f"{check}[g2]"]
    assert f"transparent_hugepage.enabled={thp} ({other} on g2)" in failed[f"{check}[g1]"]


def test_node_that_lost_a_dimm_and_cores(broken, pytester):
    """g2 sees 90 % of this machine's memory, swap the other way from this machine's (on where
    it has none) and (where it has more than one) only CPU 0 online; g1, the other node of its
    group, sees all: both are named (neither is the majority), each with how far it is from the
    group's median; c1 is alone in its group."""
    engine, path = broken
    check = "test_node_has_the_cpus_and_memory_of_its_group"
    online = ONLINE_CPUS
    swap_here = not re.search(r"^SwapTotal:\s+0 kB", Path("/proc/meminfo").read_text(), re.M)
    with contextlib.ExitStack() as stack:
        stack.enter_context(nodefaults.memory_total(engine, "g2", 0.9, swap_kb=0 if swap_here else 8388604))
        if online > 1:
            stack.enter_context(nodefaults.cpus_online(engine, "g2", "0"))
        results = run_checks(pytester, path, f"l1_nodes/test_image.py::{check}")
    assert {test: outcome for test, (outcome, _) in results.items()} == {
        f"{check}[g1]": "failed", f"{check}[g2]": "failed", f"{check}[c1]": "skipped"}
    failed = failures(results)
    g2 = failed[f"{check}[g2]"]
    assert "g2 has other hardware than the other nodes of compute[0] (g1): " in g2, g2
    assert re.search(r"memory [\d.]+ GiB, 5\.[23] % less than its group's median [\d.]+ GiB \(g1; tolerance 2 %\)", g2), g2
    assert (f"online CPUs 1 ({online} on g1)" in g2) == (online > 1), g2
    assert f"swap {'off' if swap_here else 'on'} ({'on' if swap_here else 'off'} on g1)" in g2, g2
    assert re.search(r"memory [\d.]+ GiB, 5\.[23] % more than its group's median", failed[f"{check}[g1]"])


def test_nodes_with_cores_offline_or_a_dimm_lost_still_given_whole_jobs(broken, pytester):
    """g1's MemTotal says 512 MiB under its RealMemory of 1024, c1 (on a machine with two CPUs
    or more) has one CPU online of the 2 slurm.conf gives it, and g2's NodeName line promises
    100 TiB of TmpDisk: slurmd takes slurm.conf's numbers as given (the local provider sets
    SlurmdParameters=config_overrides), so all stay IDLE and take jobs sized for the whole;
    the capacity check goes red on each, naming it."""
    engine, path = broken
    check = "test_node_has_the_cpus_and_memory_slurm_gives_its_jobs"
    host_kb = int(re.search(r"^MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text(), re.M).group(1))
    online = ONLINE_CPUS
    with contextlib.ExitStack() as stack:
        stack.enter_context(nodefaults.memory_total(engine, "g1", 512 * 1024 / host_kb))
        if online > 1:
            stack.enter_context(nodefaults.cpus_online(engine, "c1", "0"))
        stack.enter_context(slurmfaults.node_definition(engine, "g2", "TmpDisk", str(100 * 1024 * 1024)))
        failed = failures(run_checks(pytester, path, f"l2_slurm/test_registration.py::{check}",
                                     "l2_slurm/test_registration.py::test_node_registered_and_usable"))
    assert set(failed) == {f"{check}[g1]", f"{check}[g2]"} | ({f"{check}[c1]"} if online > 1 else set()), sorted(failed)
    assert re.search(r"g2 has less than Slurm gives jobs there: TmpDisk 104857600 MiB but TmpFS /tmp holds \d+ MiB\. ",
                     failed[f"{check}[g2]"]), failed[f"{check}[g2]"]
    g1 = failed[f"{check}[g1]"]
    assert re.search(r"g1 has less than Slurm gives jobs there: RealMemory 1024 MiB but MemTotal 51\d MiB\. ", g1), g1
    assert "(SlurmdParameters=config_overrides): repair g1" in g1, g1
    if online > 1:
        assert ("c1 has less than Slurm gives jobs there: CPUTot 2 but 1 CPU(s) online "
                "(/sys/devices/system/cpu/online: 0)") in failed[f"{check}[c1]"], failed[f"{check}[c1]"]


def test_nodes_whose_cpu_layout_is_not_the_hardwares(broken, pytester):
    """On this machine's one socket of two cores without SMT (the CI machine's, where the local
    provider declares slurmd -C's layout for nodes of two CPUs): g2's NodeName line claims two
    threads per core (one core), c1's two sockets of one core each (what ``CPUs=2`` alone
    says). Slurm registers both IDLE, slurmd only logs that its configuration differs from the
    hardware; the layout check goes red on each, naming what differs and slurmd -C's line.
    Where the local provider declares no layout (another machine), the check is not applicable
    on every node and says why."""
    engine, path = broken
    check = "test_node_cpu_layout_is_the_hardwares"
    hardware = host_cpu_layout()
    if hardware is None or 2 not in (hardware.threads, hardware.cores):
        results = run_checks(pytester, path, f"l2_slurm/test_registration.py::{check}")
        assert {k: outcome for k, (outcome, _) in results.items()} == {f"{check}[{n}]": "skipped"
                                                                         for n in ("g1", "g2", "c1")}, results
        assert "the local provider's nodes share one machine" in results[f"{check}[g1]"][1], results
        return
    if (hardware.sockets, hardware.cores_per_socket, hardware.threads_per_core) != (1, 2, 1):
        pytest.skip(f"the faults below assume one socket of two cores without SMT; this machine: {hardware.describe()}")
    with slurmfaults.node_definition(engine, "g2", "CoresPerSocket", "1", ThreadsPerCore="2"), \
            slurmfaults.node_definition(engine, "c1", "SocketsPerBoard", "2", CoresPerSocket="1"):
        failed = failures(run_checks(pytester, path, f"l2_slurm/test_registration.py::{check}",
                                     "l2_slurm/test_registration.py::test_node_registered_and_usable"))
    assert set(failed) == {f"{check}[g2]", f"{check}[c1]"}, sorted(failed)
    g2, c1 = failed[f"{check}[g2]"], failed[f"{check}[c1]"]
    assert ("g2: Slurm lays out its 2 CPUs as Boards=1 Sockets=1 CoresPerSocket=1 ThreadsPerCore=2, the hardware "
            "(slurmd -C) is Boards=1 Sockets=1 CoresPerSocket=2 ThreadsPerCore=1 with 2 CPUs: CoresPerSocket=1 (the "
            "hardware has 2); ThreadsPerCore=2 (the hardware has 1). Slurm allocates whole cores") in g2, g2
    assert ("a one-CPU job is given 2 of the node's CPUs, which the hardware has as separate cores, and the node "
            "runs 1/2 of the one-CPU jobs it could. Put slurmd -C's layout on its NodeName line: Boards=1 "
            "SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1") in g2, g2
    assert "Sockets=2 (the hardware has 1); CoresPerSocket=1 (the hardware has 2). task/affinity lays" in c1, c1


def test_a_node_of_two_threads_per_core_is_granted_whole_cores_and_the_cpu_checks_know_it(broken, pytester):
    """g2 laid out as one core of two threads (slurm.conf's ThreadsPerCore=2, as on a node with
    SMT): under CR_Core_Memory a ``-c 1`` task is given the whole core, both CPUs. The CPU
    checks (``-c K`` and the job shapes) count whole cores there and pass; before, they failed
    every SMT node ("-c 1 sees 2 CPUs")."""
    engine, path = broken
    checks = ("l3_cgroup/test_isolation.py::test_cpus_per_task_gives_exactly_that_many_cpus",
              "l3_cgroup/test_job_shapes.py")
    with slurmfaults.node_definition(engine, "g2", "CoresPerSocket", "1", ThreadsPerCore="2", SocketsPerBoard="1"):
        g2 = engine.cluster.controller.run("srun -w g2 -n1 -c 1 grep Cpus_allowed_list /proc/self/status", timeout=60)
        results = run_checks(pytester, path, *checks)
    assert g2.ok and count_list(g2.stdout.split()[-1]) == 2, g2.describe()  # what Slurm does there: both CPUs
    assert "test_cpus_per_task_gives_exactly_that_many_cpus[g2]" in results, sorted(results)
    assert failures(results) == {}


def test_a_node_that_keeps_a_core_for_the_system_is_held_to_the_cpus_jobs_may_use(broken, pytester):
    """g2's NodeName line keeps one of its two cores for the system (``CoreSpecCount=1``, as
    sites do for slurmd and the node health check): CPUEfctv is 1, and a job asking for
    CPUTot there is refused as never satisfiable. The CPU checks ask for what jobs may use,
    and pass; before, ``-c 2``, the one-task-per-CPU step and the two whole-node jobs were
    refused and four checks failed. Two 1-GPU jobs of one CPU each cannot run side by side on
    one usable CPU: that check is not applicable there, and says so."""
    engine, path = broken
    checks = ("l3_cgroup/test_isolation.py::test_cpus_per_task_gives_exactly_that_many_cpus",
              "l3_cgroup/test_isolation.py::test_tasks_of_a_step_are_bound_to_cpus_of_their_own",
              "l3_cgroup/test_isolation.py::test_jobs_never_share_the_cpus_they_were_granted",
              "l3_cgroup/test_job_shapes.py", "l3_gres/test_gres.py::test_concurrent_single_gpu_jobs_get_different_gpus")
    with slurmfaults.node_definition(engine, "g2", "CoreSpecCount", "1"):
        refused = engine.cluster.controller.run("srun -w g2 -n1 -c 2 --immediate=5 true", timeout=60)
        results = run_checks(pytester, path, *checks)
    assert "Requested node configuration is not available" in refused.stderr, refused.describe()
    assert failures(results) == {}
    assert results["test_cpus_per_task_gives_exactly_that_many_cpus[g2]"][0] == "passed"
    outcome, message = results["test_concurrent_single_gpu_jobs_get_different_gpus[g2]"]
    assert outcome == "skipped" and "g2 has 2 GPU(s) and 1 CPU(s) jobs may use" in message, message


def test_a_partition_that_gives_its_jobs_one_cpu_of_each_node(broken, pytester):
    """Partition ``all`` with ``MaxCPUsPerNode=1`` (a CPU partition over GPU nodes that leaves
    their other cores to GPU jobs): a job asking for two CPUs of a node there is refused. The
    CPU, MPI and GRES checks ask for what a job may use in the partition they run in, and pass
    (one task per CPU and two 1-GPU jobs side by side are not applicable: one CPU)."""
    engine, path = broken
    checks = ("l3_cgroup/test_isolation.py::test_cpus_per_task_gives_exactly_that_many_cpus",
              "l3_cgroup/test_isolation.py::test_tasks_of_a_step_are_bound_to_cpus_of_their_own",
              "l3_cgroup/test_isolation.py::test_jobs_never_share_the_cpus_they_were_granted",
              "l3_cgroup/test_job_shapes.py", "l3_gres/test_gres.py::test_concurrent_single_gpu_jobs_get_different_gpus",
              "l4_mpi/test_mpi.py::test_mpi_ranks_span_every_compute_node")
    with slurmfaults.partition_setting(engine, "all", "MaxCPUsPerNode", "1"):
        refused = engine.cluster.controller.run("srun -p all -w c1 -n1 -c 2 --immediate=5 true", timeout=60)
        results = run_checks(pytester, path, *checks)
    assert not refused.ok, refused.describe()
    assert failures(results) == {}
    assert {k for k, (outcome, _) in results.items() if outcome == "passed"} >= {
        "test_cpus_per_task_gives_exactly_that_many_cpus[c1]", "test_jobs_never_share_the_cpus_they_were_granted[c1]",
        "test_random_job_shapes_are_placed_as_requested", "test_mpi_ranks_span_every_compute_node"}, results
    assert results["test_tasks_of_a_step_are_bound_to_cpus_of_their_own[c1]"][0] == "skipped"


def test_node_that_logged_a_machine_check(broken, pytester):
    """g2's kernel says it logged a machine check (M) and loaded a proprietary driver (P);
    c1's only the driver: only g2 fails, naming the flag and where to look."""
    engine, path = broken
    check = "test_node_kernel_is_not_tainted_by_a_hardware_error_or_a_crash"
    with nodefaults.tainted(engine, "g2", "MP"), nodefaults.tainted(engine, "c1", "P"):
        results = run_checks(pytester, path, f"l1_nodes/test_image.py::{check}")
    assert {test: outcome for test, (outcome, _) in results.items()} == {
        f"{check}[g1]": "passed", f"{check}[g2]": "failed", f"{check}[c1]": "passed"}
    msg = failures(results)[f"{check}[g2]"]
    assert ("g2: its kernel is tainted M (the processor reported a machine check exception) (mask 17, all flags: PM). "
            "Read the kernel log on g2") in msg, msg


def test_nodes_whose_kernel_modules_did_not_load(broken, pytester):
    """g2 lacks the module its group requires, c1 the one every node requires (neither loaded
    nor built in, as far as the node can read): each fails naming the module and the setting
    that requires it; g1 passes."""
    engine, path = broken
    check = "test_node_has_the_kernel_modules_it_requires"
    with nodefaults.module_unloaded(engine, "g2", GROUP_MODULE), nodefaults.module_unloaded(engine, "c1", "bridge"):
        results = run_checks(pytester, path, f"l1_nodes/test_image.py::{check}")
    assert {test: outcome for test, (outcome, _) in results.items()} == {
        f"{check}[g1]": "passed", f"{check}[g2]": "failed", f"{check}[c1]": "failed"}
    failed = failures(results)
    assert (f"g2: kernel module(s) {GROUP_MODULE} (required by compute[0].kernel_modules) neither loaded nor built "
            f"into its kernel") in failed[f"{check}[g2]"], failed[f"{check}[g2]"]
    assert ("c1: kernel module(s) bridge (required by node_image.kernel_modules) neither loaded nor built into its "
            "kernel") in failed[f"{check}[c1]"], failed[f"{check}[c1]"]
    assert f"modprobe {GROUP_MODULE}" in failed[f"{check}[g2]"]


def test_link_down_fails_reachability_naming_the_node(broken, pytester):
    engine, path = broken
    with netfaults.link_down(engine, "c1"):
        results = run_checks(pytester, path, "l1_network/test_reachability.py::test_node_reaches_every_other_node")
    failed = failures(results)
    # c1 reaches nobody, and every other node reports c1 unreachable
    assert set(failed) == {f"test_node_reaches_every_other_node[{n}]" for n in ("ctl", "g1", "g2", "c1")}
    assert "c1 (" in failed["test_node_reaches_every_other_node[ctl]"]
    assert "100% loss" in failed["test_node_reaches_every_other_node[ctl]"]


def test_clock_ahead_on_one_node(broken, pytester):
    engine, path = broken
    check = "l1_network/test_reachability.py::test_clock_agrees_with_the_controller"
    with netfaults.clock_off(engine, "g2", 90):
        results = run_checks(pytester, path, check)
    failed = failures(results)
    assert list(failed) == ["test_clock_agrees_with_the_controller[g2]"]
    # the fake date runs the real one and awk: it reads a few ms behind the 90 s it adds
    # (seen in CI: +89.998 s), so the skew is judged, not its printed digits
    skew = re.search(r"g2: its clock is \+(\d+\.\d+) s from ctl's", failed["test_clock_agrees_with_the_controller[g2]"])
    assert skew and 89.0 < float(skew.group(1)) < 91.0, failed["test_clock_agrees_with_the_controller[g2]"]
    assert "is NTP (chrony) running" in failed["test_clock_agrees_with_the_controller[g2]"]
    assert {results[f"test_clock_agrees_with_the_controller[{n}]"][0] for n in ("g1", "c1")} == {"passed"}


def test_mtu_changed_on_one_node(broken, pytester):
    engine, path = broken
    with netfaults.mtu(engine, "g1", 1400):
        results = run_checks(pytester, path, "l1_network/test_reachability.py::test_mtu_matches_config_and_full_frames_pass")
    failed = failures(results)
    assert "test_mtu_matches_config_and_full_frames_pass[g1]" in failed
    assert "g1: eth0 has MTU 1400, the config says 1500" in failed["test_mtu_matches_config_and_full_frames_pass[g1]"]


def test_wrong_hostname(broken, pytester):
    engine, path = broken
    with netfaults.hostname(engine, "g2", "node-17"):
        results = run_checks(pytester, path, "l1_network/test_reachability.py::test_hostname_and_address_match_config")
    failed = failures(results)
    assert list(failed) == ["test_hostname_and_address_match_config[g2]"]
    assert "g2: hostname is 'node-17', the config says 'g2'" in failed["test_hostname_and_address_match_config[g2]"]


def test_slurmd_port_blocked(broken, pytester):
    engine, path = broken
    with netfaults.port_blocked(engine, "g1", 6818):
        results = run_checks(pytester, path, "l2_slurm/test_registration.py::test_slurm_ports_reachable")
    failed = failures(results)
    assert list(failed) == ["test_slurm_ports_reachable[g1]"]
    assert "ctl -> g1:6818 (slurmd)" in failed["test_slurm_ports_reachable[g1]"]


def test_backup_controller_down(broken, pytester):
    """A second SlurmctldHost where no slurmctld runs: jobs still run (the registration checks
    pass), only the controller check goes red, naming the backup."""
    engine, path = broken
    with slurmfaults.backup_controller_down(engine, "c1"):
        results = run_checks(pytester, path, "l2_slurm/test_registration.py::test_slurmctld_answers",
                             "l2_slurm/test_registration.py::test_node_registered_and_usable")
    failed = failures(results)
    assert list(failed) == ["test_slurmctld_answers"]
    assert "slurmctld is DOWN on backup c1" in failed["test_slurmctld_answers"]
    assert "primary ctl UP" in failed["test_slurmctld_answers"]


def test_slurmd_upgraded_but_not_restarted_on_one_node(broken, pytester):
    engine, path = broken
    with slurmfaults.slurmd_upgraded_not_restarted(engine, "g2", "22.05.99"):
        results = run_checks(pytester, path, "l2_slurm/test_registration.py::"
                                             "test_slurmd_runs_the_installed_release_of_the_controllers_slurm")
    failed = failures(results)
    assert list(failed) == ["test_slurmd_runs_the_installed_release_of_the_controllers_slurm[g2]"]
    msg = failed["test_slurmd_runs_the_installed_release_of_the_controllers_slurm[g2]"]
    assert "g2: slurmd " in msg and "is running but 22.05.99 is installed (slurmd -V): restart slurmd there" in msg


def test_gres_conf_declares_more_gpus_than_exist(broken, pytester):
    engine, path = broken
    with slurmfaults.gres_conf_extra_gpu(engine, "g1"):
        results = run_checks(pytester, path, "l3_gres/test_gres.py::test_gres_conf_matches_devices_and_config")
    failed = failures(results)
    assert list(failed) == ["test_gres_conf_matches_devices_and_config[g1]"]
    assert "g1: Slurm gives it 3 GPU device files (/dev/nvidia0, /dev/nvidia1, /dev/nvidia2; from gres.conf File=" \
        in failed["test_gres_conf_matches_devices_and_config[g1]"]


def test_gres_conf_without_device_files_fails_the_device_checks_not_passes_them(broken, pytester):
    """No File= (an AutoDetect line with nothing detected): the device-isolation checks have
    no device to judge and must not pass over none; slurmd -G is asked and says so too."""
    engine, path = broken
    with slurmfaults.gres_conf_without_files(engine, "g1"):
        results = run_checks(pytester, path, "l3_gres/test_gres.py::test_gres_conf_matches_devices_and_config",
                             "l3_cgroup/test_isolation.py::test_job_without_gres_cannot_open_any_gpu")
    failed = failures(results)
    assert set(failed) == {f"{t}[g1]" for t in ("test_gres_conf_matches_devices_and_config",
                                                "test_job_without_gres_cannot_open_any_gpu")}
    assert "g1: Slurm gives it 0 GPU device files (none; from slurmd -G (gres.conf has no File= for it))" \
        in failed["test_gres_conf_matches_devices_and_config[g1]"]
    assert "g1: Slurm names no GPU device file for the node (read from slurmd -G" \
        in failed["test_job_without_gres_cannot_open_any_gpu[g1]"]
    assert results["test_job_without_gres_cannot_open_any_gpu[g2]"][0] == "passed"


def test_memory_constraint_off_lets_a_job_exceed_its_memory(broken, pytester):
    engine, path = broken
    with slurmfaults.cgroup_setting(engine, "ConstrainRAMSpace", "no"):
        results = run_checks(pytester, path, "l3_cgroup/test_isolation.py::test_job_over_its_memory_is_oom_killed")
    failed = failures(results)
    assert set(failed) == {f"test_job_over_its_memory_is_oom_killed[{n}]" for n in ("g1", "g2", "c1")}
    assert "the memory limit is not enforced" in failed["test_job_over_its_memory_is_oom_killed[c1]"]
    assert "ended COMPLETED" in failed["test_job_over_its_memory_is_oom_killed[c1]"]


def test_cores_not_constrained_lets_a_one_cpu_task_run_on_every_cpu(broken, pytester):
    """Nothing pins tasks (TaskPlugin=task/cgroup alone, ConstrainCores=no): a -c 1 task runs
    on every CPU of its node, on every node."""
    online = clusterkit.skip_unless_one_cpu_is_less_than_the_machine(BODY["compute"][1]["cpus"])
    engine, path = broken
    check = "test_cpus_per_task_gives_exactly_that_many_cpus"
    with slurmfaults.cores_unconstrained(engine):
        results = run_checks(pytester, path, f"l3_cgroup/test_isolation.py::{check}")
    failed = failures(results)
    assert set(failed) == {f"{check}[{n}]" for n in ("g1", "g2", "c1")}, sorted(failed)
    assert f"c1: CPU confinement broken: -c 1 sees {online} CPUs" in failed[f"{check}[c1]"], failed[f"{check}[c1]"]


def test_tasks_left_unbound_share_their_steps_cpus(broken, pytester):
    """TaskPlugin=task/cgroup without task/affinity: each step is still held to the CPUs it
    was granted (the ``-c K`` check stays green), but its tasks are not bound within them:
    the tasks of a step filling a node share all its CPUs, on every node."""
    if ONLINE_CPUS < 2:
        pytest.skip("this machine has one CPU: a task sees one CPU pinned or not")
    engine, path = broken
    check = "test_tasks_of_a_step_are_bound_to_cpus_of_their_own"
    with slurmfaults.slurm_conf_setting(engine, "TaskPlugin", "task/cgroup", restart_slurmd=True):
        results = run_checks(pytester, path, f"l3_cgroup/test_isolation.py::{check}",
                             "l3_cgroup/test_isolation.py::test_cpus_per_task_gives_exactly_that_many_cpus")
    failed = failures(results)
    assert set(failed) == {f"{check}[{n}]" for n in ("g1", "g2", "c1")}, sorted(failed)
    message = failed[f"{check}[c1]"]
    assert re.search(r"c1: the 2 tasks of a step holding its 2 CPUs are not bound to CPUs of their own: tasks 0 and "
                     r"1 share CPUs? [\d,-]+ \(task CPUs: 0: [\d,-]+, 1: [\d,-]+\)\. The ranks of an MPI job", message), message
    assert "TaskPlugin=task/cgroup, TaskPluginParam=unset" in message, message


def test_jobs_held_to_a_fifth_of_the_memory_they_ask_for(broken, pytester):
    """cgroup.conf AllowedRAMSpace=20: a job's cgroup holds a fifth of its --mem, and a job
    using a quarter of what it asked for is killed on every node."""
    engine, path = broken
    check = "test_job_within_its_memory_completes"
    with slurmfaults.cgroup_setting(engine, "AllowedRAMSpace", "20"):
        results = run_checks(pytester, path, f"l3_cgroup/test_isolation.py::{check}")
    failed = failures(results)
    assert set(failed) == {f"{check}[{n}]" for n in ("g1", "g2", "c1")}, sorted(failed)
    assert re.search(r"c1: job \d+ using 32 MiB of --mem=128 ended OUT_OF_MEMORY \(exit [\d:]+\), expected COMPLETED: "
                     r"jobs are held to less memory than they ask for \(cgroup.conf AllowedRAMSpace below 100\?\)",
                     failed[f"{check}[c1]"]), failed[f"{check}[c1]"]


def test_site_task_prolog_that_hands_every_task_gpus(broken, pytester):
    """A TaskProlog exports CUDA_VISIBLE_DEVICES=0,1 into every task: a step without GRES on
    a GPU node sees GPUs it was not given (c1, without GPUs, is not a GPU node's check)."""
    engine, path = broken
    check = "test_no_gres_request_gets_no_gpu_variables"
    with slurmfaults.task_prolog_exports(engine, {"CUDA_VISIBLE_DEVICES": "0,1"}):
        results = run_checks(pytester, path, f"l3_gres/test_gres.py::{check}")
    failed = failures(results)
    assert set(failed) == {f"{check}[g1]", f"{check}[g2]"}, sorted(failed)
    assert "g1: a step without --gres sees CUDA_VISIBLE_DEVICES=0,1, Slurm GPUs=" in failed[f"{check}[g1]"]
    assert "(a TaskProlog or a profile script that sets it for every job?)" in failed[f"{check}[g1]"]


def test_slurm_that_schedules_a_gpu_the_node_lacks(broken, pytester):
    """slurm.conf and gres.conf give g1 three GPUs (it has two): a step asking for three runs
    there, and the registration check names the GRES."""
    engine, path = broken
    refused, registered = "test_more_gpus_than_the_node_has_is_refused", "test_node_resources_match_config"
    with slurmfaults.gpus_declared(engine, "g1", 3):
        # apart: a failed layer 2 check would block the layer 3 one
        registration = failures(run_checks(pytester, path, f"l2_slurm/test_registration.py::{registered}"))
        failed = failures(run_checks(pytester, path, f"l3_gres/test_gres.py::{refused}"))
    assert list(registration) == [f"{registered}[g1]"] and list(failed) == [f"{refused}[g1]"], (registration, failed)
    assert "g1 has 2 GPUs but a step asking for 3 ran" in failed[f"{refused}[g1]"]
    assert "g1 in Slurm: GRES gpu:sim:3, config says gpu:sim:2" in registration[f"{registered}[g1]"]


def test_slow_link_fails_the_mpi_bandwidth_the_full_stack_config_asks(broken, pytester, tmp_path):
    """g1's outgoing traffic shaped to 200 Mbit/s (25 MB/s): MPI ping-pong between g1 and g2
    falls below the 100 MiB/s configs/full-stack.yaml asks, and the check names pair, number and
    threshold."""
    engine, path = broken
    doc = yaml.safe_load(path.read_text())
    doc["thresholds"]["mpi_bandwidth_mibps_min"] = 100
    strict = tmp_path / "mpi-100.yaml"
    strict.write_text(yaml.safe_dump(doc, sort_keys=False))
    with netfaults.rate_limited(engine, "g1", 200):
        results = run_checks(pytester, strict, "l4_mpi/test_mpi.py::test_point_to_point_latency_and_bandwidth")
    msg = failures(results)["test_point_to_point_latency_and_bandwidth"]
    assert re.search(r"MPI g1<->g2: mpi_bandwidth_mibps on g1<->g2 = [\d.]+ MiB/s, below the minimum 100 MiB/s", msg), msg
    assert "mpi_latency_us" not in msg.split("MPI g1<->g2: ", 1)[1].split("\n", 1)[0]


def test_slurm_without_its_pmix_plugin(broken, pytester):
    """The controller's Slurm plugin directory lacks mpi_pmix*.so (a build or package without
    PMIx): srun there offers no pmix, and the check says what it offers."""
    engine, path = broken
    with slurmfaults.plugins_missing(engine, "ctl", "mpi_pmix"):
        results = run_checks(pytester, path, "l4_mpi/test_mpi.py::test_srun_offers_pmix")
    msg = failures(results)["test_srun_offers_pmix"]
    assert re.search(r"srun --mpi=list offers \[.*'pmi2'.*\] \(on ctl: `srun --mpi=list` exit 0", msg), msg
    assert "'pmix'" not in msg.split("(on ctl", 1)[0] and "): no pmix plugin" in msg, msg


def test_slurm_files_users_can_change(broken, pytester):
    """cgroup.conf writable by every user (every node reads it), and an Epilog owned by uid 4242:
    every node names cgroup.conf, the compute nodes (where the epilog runs) the epilog too."""
    engine, path = broken
    check = "test_slurm_configs_and_scripts_can_be_changed_only_by_root_or_slurm"
    with slurmfaults.conf_file_mode(engine, "cgroup.conf", 0o666), \
            slurmfaults.node_script_owned_by(engine, "Epilog", 4242) as epilog:
        results = run_checks(pytester, path, f"l2_slurm/test_registration.py::{check}")
    failed = failures(results)
    assert set(failed) == {f"{check}[{n}]" for n in ("ctl", "g1", "g2", "c1")}, sorted(failed)
    for node in ("ctl", "g1"):
        assert (f"{node}: users other than root and SlurmUser " in failed[f"{check}[{node}]"]
                and f"file {engine.conf_dir}/cgroup.conf (0666 root:root) writable by every user" in failed[f"{check}[{node}]"]
                and "chown them to root and chmod go-w" in failed[f"{check}[{node}]"]), failed[f"{check}[{node}]"]
    assert f"file {epilog} (0755 UNKNOWN:UNKNOWN) owned by UNKNOWN (uid 4242)" in failed[f"{check}[g1]"]
    assert epilog not in failed[f"{check}[ctl]"].split("AssertionError")[0]


def test_partition_that_oversubscribes_cpus_lets_two_jobs_share_them(broken, pytester):
    """OverSubscribe=FORCE:2 on the partition: two jobs each granted all of a node's CPUs run
    at once on the same CPUs, and Slurm's partition differs from the config (which does not
    declare the sharing). Every other cgroup check still passes: each job alone gets exactly
    what it asked for."""
    engine, path = broken
    with slurmfaults.partition_setting(engine, "all", "OverSubscribe", "FORCE:2"):
        # apart: a failed layer 2 check would block the layer 3 ones
        registration = failures(run_checks(pytester, path, "l2_slurm/test_registration.py"))
        failed = failures(run_checks(pytester, path, "l3_cgroup/test_isolation.py"))
    assert list(registration) == ["test_partitions_match_config"]
    assert ("partitions where Slurm forces jobs to share CPUs other than the config says: all OverSubscribe=FORCE:2 "
            "(config: oversubscribe False)") in registration["test_partitions_match_config"]
    assert set(failed) == {f"test_jobs_never_share_the_cpus_they_were_granted[{n}]" for n in ("g1", "g2", "c1")}
    msg = failed["test_jobs_never_share_the_cpus_they_were_granted[c1]"]
    assert re.search(r"c1: two jobs, each granted all 2 of its CPUs, ran side by side on CPUs \d+,\d+: Slurm "
                     r"oversubscribes the node's CPUs \(partition all OverSubscribe=FORCE:2, SelectTypeParameters=", msg), msg


def test_partition_whose_default_memory_is_a_whole_node_runs_one_small_job_per_node(broken, pytester):
    """DefMemPerNode=1024 (a whole node) on partition ``all``: a job without --mem takes all of
    a node's memory, so one runs per node however many CPUs are free. Only the default-memory
    check goes red; every job that asks for memory still gets exactly what it asks for."""
    engine, path = broken
    with slurmfaults.partition_setting(engine, "all", "DefMemPerNode", "1024"):
        failed = failures(run_checks(pytester, path, "l3_cgroup/test_isolation.py"))
    check = "test_a_job_without_a_memory_request_leaves_the_nodes_other_cpus_usable"
    assert set(failed) == {f"{check}[{n}]" for n in ("g1", "g2", "c1")}
    assert re.search(r"c1: a one-task job without --mem \(job \d+, partition all\) is given 1024 MiB of the 1024 MiB "
                     r"jobs may use on the node: only 1 such job fits at a time, and 1 of its 2 CPUs stay idle "
                     r"\(slurm.conf DefMemPerCPU=512, partition all DefMemPerNode=1024\)\. Give jobs a default of at "
                     r"most 512 MiB per CPU", failed[f"{check}[c1]"]), failed[f"{check}[c1]"]


def test_device_constraint_off_lets_a_job_open_every_gpu(broken, pytester):
    engine, path = broken
    with slurmfaults.cgroup_setting(engine, "ConstrainDevices", "no"):
        results = run_checks(pytester, path, "l3_cgroup/test_isolation.py::test_job_without_gres_cannot_open_any_gpu",
                             "l3_cgroup/test_isolation.py::test_job_with_one_gpu_opens_exactly_its_own")
    failed = failures(results)
    assert set(failed) == {f"{t}[{n}]" for n in ("g1", "g2") for t in (
        "test_job_without_gres_cannot_open_any_gpu", "test_job_with_one_gpu_opens_exactly_its_own")}
    assert "g1: a job without --gres can open /dev/nvidia0, /dev/nvidia1" in failed["test_job_without_gres_cannot_open_any_gpu[g1]"]


def test_process_tracking_by_process_group_lets_a_daemonised_process_outlive_its_job(broken, pytester):
    engine, path = broken
    with slurmfaults.slurm_conf_setting(engine, "ProctrackType", "proctrack/pgid", restart_slurmd=True):
        results = run_checks(pytester, path, "l3_cgroup/test_isolation.py::"
                                             "test_processes_a_job_leaves_behind_are_killed_when_it_ends")
    failed = failures(results)
    assert set(failed) == {f"test_processes_a_job_leaves_behind_are_killed_when_it_ends[{n}]" for n in ("g1", "g2", "c1")}
    msg = failed["test_processes_a_job_leaves_behind_are_killed_when_it_ends[c1]"]
    assert "c1: a process the job started in its own session" in msg and "ProctrackType=proctrack/pgid" in msg
    left = [n for n in ("g1", "g2", "c1") if engine.cluster.node(n).run("pgrep -f '[s]leep 9876[.]' || true").stdout.strip()]
    assert left == [], f"the check left its escaped processes on {left}"


def test_batch_output_written_where_the_submitter_cannot_see_it(broken, pytester):
    """The shared directory is private on every compute node: the batch job completes, but its
    output file never reaches the controller."""
    from pytest_hpcvalidate.faults import storage as storagefaults

    engine, path = broken
    with storagefaults.private_directory(engine, ["g1", "g2", "c1"], str(engine.cluster.shared_dir)):
        results = run_checks(pytester, path, "l2_slurm/test_registration.py::test_batch_job_completes")
    failed = failures(results)
    assert list(failed) == ["test_batch_job_completes"]
    assert "its output file" in failed["test_batch_job_completes"]
    assert "is not readable on ctl" in failed["test_batch_job_completes"]


def test_mpirun_in_a_batch_job_fails_where_a_node_cannot_see_the_program(broken, pytester):
    from pytest_hpcvalidate.faults import storage as storagefaults

    engine, path = broken
    # g2: not the batch host (c1, the allocation's first node), so the job's output arrives
    with storagefaults.private_directory(engine, ["g2"], str(engine.cluster.shared_dir)):
        results = run_checks(pytester, path, "l4_mpi/test_mpi.py::test_mpirun_inside_a_batch_job_spans_every_compute_node")
    failed = failures(results)
    assert list(failed) == ["test_mpirun_inside_a_batch_job_spans_every_compute_node"]
    msg = failed["test_mpirun_inside_a_batch_job_spans_every_compute_node"]
    assert "mpirun in batch job" in msg and "the job ended FAILED" in msg and "hpcv-mpi" in msg, msg


def test_epilog_missing_on_the_nodes(broken, pytester):
    engine, path = broken
    check = "l2_slurm/test_registration.py::test_prolog_and_epilog_scripts_are_in_place"
    # a missing Epilog drains the node after its next job; a missing node health check
    # (HealthCheckProgram, e.g. LBNL NHC) means the node's health is never checked
    with slurmfaults.slurm_conf_added(engine, "Epilog=/etc/slurm/hpcv-epilog-missing.sh\n"
                                              "HealthCheckProgram=/usr/sbin/hpcv-nhc-missing\nHealthCheckInterval=300"):
        results = run_checks(pytester, path, check)
    failed = failures(results)
    assert set(failed) == {f"test_prolog_and_epilog_scripts_are_in_place[{n}]" for n in ("g1", "g2", "c1")}
    msg = failed["test_prolog_and_epilog_scripts_are_in_place[c1]"]
    assert "c1: Epilog=/etc/slurm/hpcv-epilog-missing.sh: missing" in msg
    assert "HealthCheckProgram=/usr/sbin/hpcv-nhc-missing: missing" in msg
    assert results["test_prolog_and_epilog_scripts_are_in_place[ctl]"][0] == "passed"
    with slurmfaults.controller_script_lost_its_mode(engine, "PrologSlurmctld") as script:
        results = run_checks(pytester, path, check)
    failed = failures(results)
    assert list(failed) == ["test_prolog_and_epilog_scripts_are_in_place[ctl]"]
    assert f"ctl: PrologSlurmctld={script}: not executable" in failed["test_prolog_and_epilog_scripts_are_in_place[ctl]"]


def test_stale_slurm_conf_on_one_node(broken, pytester):
    engine, path = broken
    with slurmfaults.stale_slurm_conf(engine, "c1"):
        results = run_checks(pytester, path, "l2_slurm/test_registration.py::test_slurm_conf_is_the_controllers")
    failed = failures(results)
    assert list(failed) == ["test_slurm_conf_is_the_controllers[c1]"]
    assert "c1: " in failed["test_slurm_conf_is_the_controllers[c1]"]
    assert "differs from ctl's" in failed["test_slurm_conf_is_the_controllers[c1]"]


def test_jobs_get_the_submitting_shells_locked_memory_limit(broken, pytester):
    """PropagateResourceLimitsExcept without MEMLOCK: jobs inherit the limit of the shell srun
    runs in (lowered here to 64 KiB, a common distribution default) instead of slurmd's."""
    engine, path = broken
    check = "l3_cgroup/test_isolation.py::test_job_gets_the_locked_memory_limit"
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    # this process's commands (srun on the controller among them) inherit its limits
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (64 * 1024, hard))
    try:
        with slurmfaults.slurm_conf_setting(engine, "PropagateResourceLimitsExcept", "CORE"):
            results = run_checks(pytester, path, check)
    finally:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (soft, hard))
    failed = failures(results)
    assert set(failed) == {f"test_job_gets_the_locked_memory_limit[{n}]" for n in ("g1", "g2", "c1")}
    msg = failed["test_job_gets_the_locked_memory_limit[c1]"]
    assert f"c1: a job's locked-memory limit is 64 KiB, the config wants {MEMLOCK}" in msg
    assert "PropagateResourceLimitsExcept=MEMLOCK" in msg


def test_slurmd_spool_dir_full_on_one_node(broken, pytester):
    engine, path = broken
    spool = str(engine.node_paths("g1").root / "spool")
    check = "l2_slurm/test_registration.py::test_slurm_state_directory_has_room"
    with slurmfaults.directory_full(engine, "g1", spool):
        results = run_checks(pytester, path, check)
    failed = failures(results)
    assert list(failed) == ["test_slurm_state_directory_has_room[g1]"]
    assert "g1: SlurmdSpoolDir=" in failed["test_slurm_state_directory_has_room[g1]"]
    assert "GiB free" in failed["test_slurm_state_directory_has_room[g1]"]


BURST_CHECK = "l2_slurm/test_burst.py"
BURST_TEST = "test_a_burst_of_short_jobs_completes_on_every_node"


def test_a_node_whose_tmp_is_full_fails_its_share_of_a_burst(broken, pytester):
    """c1's /tmp is a full 64 KiB filesystem: every job that writes there fails, while Slurm
    keeps c1 IDLE and gives it its share of the burst (a black hole). The burst check names
    c1, how many of its tasks failed and what the first wrote; the other nodes are not named."""
    engine, path = broken
    with slurmfaults.directory_full(engine, "c1", "/tmp", size="64k"):
        failed = failures(run_checks(pytester, path, BURST_CHECK))
    message = failed[BURST_TEST]
    assert re.search(rf"a burst of {BURST} short jobs \(job array \d+, partition all, {BURST} ended in [\d.]+ s\): "
                     r"c1 failed (\d) of the \1 tasks it ran \(FAILED 1:0 ×\1\); task \d wrote: .*No space left on device "
                     r"hpcv-burst: cannot write 1 MiB to /tmp on c1\. A node that fails", message), message
    assert "g1 failed" not in message and "g2 failed" not in message, message
    assert "scontrol update NodeName=<node> State=DRAIN" in message, message


def test_a_node_whose_jobs_hang_holds_its_share_of_a_burst(broken, pytester):
    """On c1 the tasks' ``head`` hangs (as on a hung filesystem): c1's tasks are still running
    when the burst's time is up; the check says how many tasks had not ended and where."""
    engine, path = broken
    with faults.wrapped_on_node(engine, "c1", "head", "#!/bin/sh\nexec sleep 600\n"):
        failed = failures(run_checks(pytester, path, BURST_CHECK))
    message = failed[BURST_TEST]
    m = re.search(rf"a burst of {BURST} short jobs \(job array \d+, partition all, (\d) ended in (\d+)\.\d s\): "
                  rf"(\d) of {BURST} tasks had not ended after \d+ s \(0 never started, RUNNING 0:0 ×\3: still on "
                  r"c1 ×\3\)", message)
    assert m and int(m.group(2)) >= BURST_S_MAX, message
    assert not re.search(r"\b(c1|g1|g2) failed", message), message  # hung, not failed: no node is blamed for failing


def test_an_array_larger_than_slurm_takes_is_refused_naming_the_limit(broken, pytester):
    engine, path = broken
    with slurmfaults.max_array_size(engine, BURST - 2):
        failed = failures(run_checks(pytester, path, BURST_CHECK))
    message = failed[BURST_TEST]
    assert f"sbatch refused a job array of {BURST} short jobs in partition all (MaxArraySize={BURST - 2}, " in message
    assert "Invalid job array specification" in message, message
    assert f"Raise MaxArraySize above {BURST - 1}" in message, message


def test_an_epilog_that_holds_every_node_after_each_job_slows_a_burst_below_its_rate(broken, pytester):
    engine, path = broken
    with slurmfaults.slow_epilog(engine, EPILOG_S):
        failed = failures(run_checks(pytester, path, BURST_CHECK))
    message = failed[BURST_TEST]
    assert re.search(rf"a burst of {BURST} short jobs in partition all took (2\d|[3-9]\d)\.\d s, burst_jobs_per_min = "
                     rf"[\d.]+ jobs/min, below the minimum {BURST_PER_MIN} jobs/min; they ran on c1, g1, g2 of its 3 "
                     r"nodes \(slurm.conf: Epilog=/etc/slurm/hpcv-epilog.sh", message), message
    assert "Slow prologs/epilogs" in message, message


def test_mpi_default_not_pmix(broken, pytester):
    engine, path = broken
    with slurmfaults.slurm_conf_setting(engine, "MpiDefault", "none"):
        results = run_checks(pytester, path, "l4_mpi/test_mpi.py")
    failed = failures(results)
    assert "test_mpi_default_is_the_configured_plugin" in failed
    assert "MpiDefault is none, the config says pmix" in failed["test_mpi_default_is_the_configured_plugin"]
    # without pmix every rank starts as a singleton: the ranks check sees it
    assert "test_mpi_ranks_span_every_compute_node" in failed
    assert "world size" in failed["test_mpi_ranks_span_every_compute_node"]


def test_faults_refuse_anything_but_a_local_cluster():
    with pytest.raises(RuntimeError, match="never an existing one"):
        faults.require_local(object())


def test_packet_loss_to_one_node(broken, pytester):
    engine, path = broken
    with netfaults.packet_loss(engine, "g2", 0.5):
        results = run_checks(pytester, path, "l1_network/test_reachability.py::test_node_reaches_every_other_node")
    failed = failures(results)
    # every other node loses pings to g2; g2's own pings to others are answered
    assert set(failed) == {f"test_node_reaches_every_other_node[{n}]" for n in ("ctl", "g1", "c1")}
    assert "cannot reliably reach: g2 (" in failed["test_node_reaches_every_other_node[c1]"]


def test_rate_limited_node_fails_bandwidth_for_its_pair(broken, pytester):
    engine, path = broken
    with netfaults.rate_limited(engine, "g1", 200):
        results = run_checks(pytester, path, "l1_network/test_reachability.py::test_bandwidth_between_node_pair")
    failed = failures(results)
    # the ring is ctl->g1->g2->c1->ctl; only traffic leaving g1 is shaped
    assert list(failed) == ["test_bandwidth_between_node_pair[g1->g2]"]
    assert "tcp_bandwidth_gbps on g1->g2 = 0." in failed["test_bandwidth_between_node_pair[g1->g2]"]
    assert "below the minimum 1 Gbit/s" in failed["test_bandwidth_between_node_pair[g1->g2]"]


def test_wrong_name_resolution(broken, pytester):
    engine, path = broken
    with netfaults.wrong_hosts_entry(engine, "c1", "10.99.0.9"):
        results = run_checks(pytester, path, "l1_network/test_reachability.py::test_every_node_name_resolves_to_its_address")
    failed = failures(results)
    assert len(failed) == 4  # the hosts file is the cluster's: every node resolves c1 wrong
    assert "c1 -> ['10.99.0.9']" in failed["test_every_node_name_resolves_to_its_address[g1]"]


def test_stale_hosts_line_for_a_reused_address(broken, pytester):
    """A line naming ``old-c1`` for c1's address, before c1's own: the forward lookup stays
    right (that check passes), the reverse one names old-c1 on every node (the hosts file is
    the cluster's)."""
    engine, path = broken
    forward, reverse = "test_every_node_name_resolves_to_its_address", "test_every_node_address_resolves_back_to_its_name"
    with netfaults.stale_hosts_entry(engine, "c1", "old-c1"):
        results = run_checks(pytester, path, f"l1_network/test_reachability.py::{forward}",
                             f"l1_network/test_reachability.py::{reverse}")
    outcomes = {test: outcome for test, (outcome, _) in results.items()}
    nodes = ("ctl", "g1", "g2", "c1")
    assert outcomes == {**{f"{forward}[{n}]": "passed" for n in nodes}, **{f"{reverse}[{n}]": "failed" for n in nodes}}
    address = engine.cluster.node("c1").address
    msg = failures(results)[f"{reverse}[g1]"]
    assert (f"reverse name resolution on g1 is wrong: {address} -> old-c1 (expected c1). Fix the hosts file or the "
            "DNS PTR records") in msg, msg


def test_sshd_stopped_on_one_node(broken, pytester):
    engine, path = broken
    with netfaults.sshd_stopped(engine, "g1"):
        results = run_checks(pytester, path, "l1_network/test_reachability.py::test_ssh_reaches_node_with_cluster_key")
    bad = {k: msg for k, (outcome, msg) in results.items() if outcome != "passed"}
    assert list(bad) == ["test_ssh_reaches_node_with_cluster_key[g1]"]
    assert "g1" in bad["test_ssh_reaches_node_with_cluster_key[g1]"]
    assert "refused" in bad["test_ssh_reaches_node_with_cluster_key[g1]"].lower()


def test_node_registered_with_fewer_cpus_and_less_memory(broken, pytester):
    engine, path = broken
    with slurmfaults.node_definition(engine, "c1", "RealMemory", "512"):
        results = run_checks(pytester, path, "l2_slurm/test_registration.py::test_node_resources_match_config")
    failed = failures(results)
    assert list(failed) == ["test_node_resources_match_config[c1]"]
    assert "c1 in Slurm: RealMemory 512 MiB, config says 1024" in failed["test_node_resources_match_config[c1]"]


def test_node_declared_with_another_nodes_features(broken, pytester):
    """g2's slurm.conf line says Features=cpu (copied from c1's): the registration check names
    g2 alone, and the constraint check sees --constraint=gpu never satisfiable on two nodes and
    --constraint=cpu run on two nodes where one should have it."""
    engine, path = broken
    registration = "test_node_resources_match_config"
    constraint = "test_a_job_constrained_to_a_feature_runs_only_on_the_nodes_that_have_it"
    with slurmfaults.node_definition(engine, "g2", "Features", "cpu"):
        results = run_checks(pytester, path, f"l2_slurm/test_registration.py::{registration}",
                             f"l2_slurm/test_registration.py::{constraint}")
    failed = failures(results)
    assert sorted(failed) == [constraint, f"{registration}[g2]"], sorted(failed)
    assert "g2 in Slurm: Features cpu, config says gpu" in failed[f"{registration}[g2]"]
    msg = failed[constraint]
    assert "jobs constrained to a feature do not run where the config gives it: " in msg, msg
    assert re.search(r"srun -p all --ntasks-per-node=1 --constraint=cpu -N2 ran on (c1,g2|g2,c1): only c1 of all "
                     r"should have cpu", msg), msg
    assert ("srun -p all --ntasks-per-node=1 --constraint=gpu -N2 failed (on ctl: `srun -p all --ntasks-per-node=1 "
            "--constraint=gpu -N2") in msg and "Requested node configuration is not available" in msg, msg


def test_partition_with_another_time_limit_and_a_node_left_out(broken, pytester):
    """Partition `all` with MaxTime=30 (the config: 720 minutes, which Slurm prints 12:00:00 and
    the healthy run accepts as the same) and without c1."""
    engine, path = broken
    with slurmfaults.partition_setting(engine, "all", "MaxTime", "30"), \
            slurmfaults.partition_setting(engine, "all", "Nodes", "g1,g2"):
        results = run_checks(pytester, path, "l2_slurm/test_registration.py::test_partitions_match_config")
    msg = failures(results)["test_partitions_match_config"]
    assert ("partitions in Slurm differ from the config: all lacks c1; all MaxTime=00:30:00 (config: max_time 720) "
            "(fix the PartitionName lines of slurm.conf, or slurm.partitions in the config)") in msg, msg


def test_partition_left_down(broken, pytester):
    """Partition `all` State=DOWN (after maintenance): the partition check says so and how to
    bring it up, before any job queues there."""
    engine, path = broken
    with slurmfaults.partition_setting(engine, "all", "State", "DOWN"):
        results = run_checks(pytester, path, "l2_slurm/test_registration.py::test_partitions_match_config")
    msg = failures(results)["test_partitions_match_config"]
    assert ("partitions in Slurm differ from the config: all State=DOWN (jobs queue there and never start: scontrol "
            "update PartitionName=all State=UP)") in msg, msg


def test_default_partition_differs_from_config(broken, pytester):
    engine, path = broken
    with slurmfaults.partition_setting(engine, "all", "Default", "NO"):
        results = run_checks(pytester, path, "l2_slurm/test_registration.py::test_partitions_match_config")
    failed = failures(results)
    assert list(failed) == ["test_partitions_match_config"]
    assert "default partition is none, config says all" in failed["test_partitions_match_config"]


def test_partition_that_lets_jobs_outlive_their_time_limit(broken, pytester):
    """OverTimeLimit=UNLIMITED on the partition (it overrides slurm.conf's 0): a job past its
    time limit runs on, and only the time-limit check sees it."""
    engine, path = broken
    with slurmfaults.partition_setting(engine, "all", "OverTimeLimit", "UNLIMITED"):
        results = run_checks(pytester, path, "l2_slurm/test_time_limits.py", "l2_slurm/test_job_failures.py")
    failed = failures(results)
    assert list(failed) == ["test_a_job_past_its_time_limit_is_stopped"]
    msg = failed["test_a_job_past_its_time_limit_is_stopped"]
    assert re.search(r"job \d+ on (g1|g2|c1) \(partition all\) is RUNNING \d+ s past its time limit", msg), msg
    assert "partition all UNLIMITED" in msg and "OverTimeLimit UNLIMITED never stops a job" in msg
    left = engine.cluster.controller.run("squeue -h -t PD,R -o %i").stdout.split()
    assert left == [], f"the check left its job {left} running"


def test_compute_clocks_behind_the_controller_refuse_the_shortened_time_limit(broken, pytester):
    """scontrol on every compute node reads a clock 2 min behind the controller's: each end
    the over-time job asks for (now+10 s .. now+50 s by that clock) is already past for
    slurmctld, which refuses it. The time-limit check says so, with slurmctld's refusal and
    the clock to look at, instead of waiting out a job that never shortened its limit."""
    engine, path = broken
    with netfaults.clock_off(engine, ["g1", "g2", "c1"], -120, programs=("scontrol",)):
        results = run_checks(pytester, path, "l2_slurm/test_time_limits.py")
    failed = failures(results)
    assert list(failed) == ["test_a_job_past_its_time_limit_is_stopped"]
    msg = failed["test_a_job_past_its_time_limit_is_stopped"]
    assert re.search(r"job \d+ on (g1|g2|c1) \(partition all\): the job could not shorten its own time limit "
                     r"\(EndTime now\+10\.\.50 s on (g1|g2|c1) at \S+ refused: Invalid time specified", msg), msg
    assert "the node's clock within seconds of the controller's" in msg, msg


def test_node_that_maps_a_user_to_another_uid(broken, pytester):
    """c1's directory is out of date: hpcv is another uid there. Both user checks see it, on
    c1 alone: Slurm starts hpcv's job there under the controller's uid, which c1 cannot name."""
    engine, path = broken
    with slurmfaults.user_with_other_uid(engine, "c1", "hpcv", 29999):
        results = run_checks(pytester, path, "l2_slurm/test_users.py")
    failed = failures(results)
    assert sorted(failed) == ["test_a_users_job_runs_as_them_on_every_compute_node",
                              "test_users_resolve_alike_on_every_node[c1]"]
    assert re.search(r"user hpcv is uid 29999 gid \d+ home \S+ on c1 but uid \d+ gid \d+ home \S+ on ctl",
                     failed["test_users_resolve_alike_on_every_node[c1]"])
    job = failed["test_a_users_job_runs_as_them_on_every_compute_node"]
    assert "AssertionError: a job of hpcv on c1 ran as uid 20000, which c1 knows by no name: whatever looks " \
        "the user up there (id, ssh, mpirun, the home directory) fails\n" in job, job


def test_node_without_the_users_home_directory(broken, pytester):
    """The home file system is not mounted on g2 (an empty tmpfs over the homes' directory
    there): only the user's job check sees it."""
    engine, path = broken
    homes = str(engine.spec.shared_dir / "home")
    with faults.mounted_on_node(engine.cluster.node("g2"), homes, "-t", "tmpfs", "-o", "size=1m", "hpcv-fault-home"):
        results = run_checks(pytester, path, "l2_slurm/test_users.py")
    failed = failures(results)
    assert list(failed) == ["test_a_users_job_runs_as_them_on_every_compute_node"]
    assert (f"AssertionError: a job of hpcv on g2 has no home directory it can write ({homes}/hpcv is missing or "
            f"not writable there): is the home file system mounted on g2?\n") in failed[
        "test_a_users_job_runs_as_them_on_every_compute_node"]


def test_srun_wrapper_that_drops_the_exit_status(broken, pytester):
    engine, path = broken
    with slurmfaults.wrapped_on_controller(engine, "srun", slurmfaults.SRUN_WRAPPER_DROPS_STATUS):
        results = run_checks(pytester, path, "l2_slurm/test_job_failures.py")
    failed = failures(results)
    assert set(failed) == {"test_srun_returns_the_exit_status_of_a_failing_task",
                           "test_job_killed_by_a_signal_is_recorded_with_the_signal[9-KILL]",
                           "test_job_killed_by_a_signal_is_recorded_with_the_signal[11-SEGV]"}
    msg = failed["test_srun_returns_the_exit_status_of_a_failing_task"]
    assert "a task that exits 3 returned 0: a failing job step looks like a success" in msg
    assert "srun is /usr/bin/srun (a script: #!/bin/sh)" in msg
    assert "returned 0, not 139" in failed["test_job_killed_by_a_signal_is_recorded_with_the_signal[11-SEGV]"]


def test_sbatch_wrapper_that_appends_to_scripts(broken, pytester):
    engine, path = broken
    with slurmfaults.wrapped_on_controller(engine, "sbatch", slurmfaults.SBATCH_WRAPPER_APPENDS):
        results = run_checks(pytester, path, "l2_slurm/test_job_failures.py")
    failed = failures(results)
    assert list(failed) == ["test_failing_batch_job_is_recorded_failed_with_its_exit_code"]
    msg = failed["test_failing_batch_job_is_recorded_failed_with_its_exit_code"]
    assert "ended COMPLETED with exit code 0:0 (expected FAILED, 3:0)" in msg
    assert "sbatch is /usr/bin/sbatch (a script: #!/bin/sh)" in msg
