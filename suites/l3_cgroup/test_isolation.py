"""Layer 3, cgroup isolation: what Slurm grants is what a job gets — cores, memory, devices."""

from __future__ import annotations

import os
import time

import pytest

from pytest_hpcvalidate.capabilities import not_applicable
from pytest_hpcvalidate.probes import isolation, slurm

#: how long a whole-node job may wait for another job on the node before its own turn: the run's
#: own over-time job (layer 2) holds a CPU up to its 10 s, slurmctld's 30 s time-limit pass and
#: KillWait (30 s by default) after it starts
OTHER_JOB_S = 90.0

#: a job that needs about ``MiB`` of memory at once (tail buffers the whole newline-free line)
HOG = "head -c {mib}m /dev/zero | tail -n 1 > /dev/null"


# Every check here is one test per node, and each_node runs all of a check's nodes' jobs at
# once (one job per node: they never compete for a node's CPUs or memory).


def test_cpus_per_task_gives_exactly_that_many_cpus(compute_node, controller, job_cpus, place_on, thresholds,
                                                   cpus_granted, each_node):
    """``-c K`` for K = 1 and K = all of the CPUs jobs may use on the node: the task is pinned to
    exactly K CPUs (or to the whole cores Slurm grants for them, where a core has several threads)."""
    def probe(n):
        problems = []
        for k in sorted({1, job_cpus(n.name)}):
            whole = k == job_cpus(n.name)  # waits while another job holds a CPU of the node
            r = slurm.srun(controller, f"{place_on(n)} -n1 -c {k}", isolation.step_facts_command([]),
                           timeout=thresholds.job_start_s_max + (OTHER_JOB_S if whole else 0))
            if not r.ok:
                problems.append(f"-c {k} failed: {r.describe()}")
                continue
            seen = isolation.parse_step_facts(r.stdout)[0].cpus
            if wrong := slurm.cpus_seen_problem(k, seen, cpus_granted(n.name, k)):
                problems.append(wrong)
        return problems

    problems = each_node(probe)
    assert not problems, f"{compute_node.name}: CPU confinement broken: " + "; ".join(problems)


def test_tasks_of_a_step_are_bound_to_cpus_of_their_own(compute_node, controller, job_cpus, place_on, thresholds,
                                                       each_node):
    """One task per CPU of the node in one step (``srun -n <CPUs>``, as an MPI job starts its
    ranks): every task is bound to CPUs no other task of the step has. Slurm's task/affinity
    binds them by default when a step's tasks fill what it holds; unbound, the ranks share the
    step's CPUs and the kernel moves them between cores as it likes: cache and NUMA locality
    are lost, and two ranks can land on one core while another idles."""
    cpus = job_cpus(compute_node.name)
    if cpus < 2:
        not_applicable(f"{compute_node.name} has one CPU jobs may use: one task per CPU is one task")

    def probe(n):
        k = job_cpus(n.name)
        if k < 2:
            return None
        return slurm.srun(controller, f"{place_on(n)} -n {k} -l", isolation.step_facts_command([]),
                          timeout=thresholds.job_start_s_max + OTHER_JOB_S)

    r = each_node(probe)
    tasks = isolation.parse_step_facts(r.stdout) if r.ok else []
    assert len(tasks) == cpus, (
        f"{compute_node.name}: a step of {cpus} tasks (one per CPU) did not report from every task: {r.describe()}")
    blind = [i for i, t in enumerate(tasks) if not t.cpus]
    assert not blind, (f"{compute_node.name}: task(s) {', '.join(map(str, blind))} of a step could not read which "
                       f"CPUs they may run on (Cpus_allowed_list in /proc/self/status): {r.describe()}")
    shared = isolation.shared_cpus(tasks)
    if shared:
        config = slurm.show_config(controller)
        said = ", ".join(slurm.shown(config, k) for k in ("TaskPlugin", "TaskPluginParam"))
        raise AssertionError(
            f"{compute_node.name}: the {cpus} tasks of a step holding its {cpus} CPUs are not bound to CPUs of "
            f"their own: " + "; ".join(f"tasks {a} and {b} share CPU{'s' if len(c) > 1 else ''} {isolation.cpulist(c)}"
                                for a, b, c in shared)
            + f" (task CPUs: {', '.join(f'{i}: {isolation.cpulist(t.cpus)}' for i, t in enumerate(tasks))}). The "
            f"ranks of an MPI job started with srun there share cores and move between them. Slurm binds tasks "
            f"with task/affinity in TaskPlugin (and no TaskPluginParam/CpuBind=none): {said}")


def test_jobs_never_share_the_cpus_they_were_granted(compute_node, controller, job_cpus, partition_of, thresholds,
                                                     each_node):
    """Two jobs, each granted all of the node's CPUs, submitted together: the second must wait
    for the first to end. Side by side they share CPUs each was granted, and each runs at a
    fraction of what it asked for: Slurm oversubscribes the node (a partition's
    ``OverSubscribe=FORCE``, or ``SelectTypeParameters`` that count memory only). Run in a
    partition that does not share CPUs on purpose (``slurm.partitions[].oversubscribe``)."""
    hold = 1.0
    part = partition_of(compute_node, dedicated=True)
    if part is None:
        not_applicable(f"{compute_node.name} is only in partitions whose jobs share CPUs on purpose "
                       "(slurm.partitions[].oversubscribe)")
    cpus = job_cpus(compute_node.name, part)

    def probe(n):
        where = partition_of(n, dedicated=True)
        if where is None:
            return None, []
        args = f"-p {where} -w {n.name} -N1 -n1 -c {job_cpus(n.name, where)} --mem=32"
        r = controller.run(isolation.side_by_side([args, args], isolation.step_facts_command([], hold)),
                           timeout=2 * (thresholds.job_start_s_max + hold) + OTHER_JOB_S)
        return r, [isolation.parse_step_facts(out) for out in isolation.split_side_by_side(r.stdout, 2)]

    r, runs = each_node(probe)
    assert [len(facts) for facts in runs] == [1, 1], (
        f"{compute_node.name}: two jobs asking for all {cpus} of its CPUs did not both run: {r.describe()}")
    (a,), (b,) = runs
    shared = sorted(a.cpus & b.cpus)
    if isolation.overlapped(a, b) and shared:
        over = slurm.partition_settings(controller, part).get("OverSubscribe", "?")
        raise AssertionError(
            f"{compute_node.name}: two jobs, each granted all {cpus} of its CPUs, ran side by side on CPUs "
            f"{','.join(map(str, shared))}: Slurm oversubscribes the node's CPUs (partition {part} "
            f"OverSubscribe={over}, SelectTypeParameters={slurm.config_value(controller, 'SelectTypeParameters')}); "
            f"each job gets a fraction of what it was granted")


def test_a_job_without_a_memory_request_leaves_the_nodes_other_cpus_usable(compute_node, controller, partition_of,
                                                                          place_on, slurm_nodes, slurm_config,
                                                                          job_cpus, thresholds, each_node):
    """Most jobs do not say how much memory they need, and get Slurm's default
    (DefMemPerCPU or DefMemPerNode, slurm.conf or the partition). With memory a consumable
    resource and no per-CPU default, each such job is given the node's whole memory, and a
    node runs one of them at a time however many CPUs it has: the cluster looks busy at a
    fraction of its capacity. The default must let as many one-task jobs fit by memory as
    fit by CPUs. (A partition of whole-node jobs says so with OverSubscribe=EXCLUSIVE: its
    one-task job is given every CPU, and one job per node is what fits.)"""
    info, r = each_node(lambda n: slurm.srun_job(controller, f"{place_on(n)} -n1", "true",
                                                 timeout=thresholds.job_start_s_max))
    name, node, config = compute_node.name, slurm_nodes.get(compute_node.name), slurm_config
    assert info is not None and info.state == "COMPLETED" and node is not None, (
        f"{name}: a one-task job without --mem did not run: {r.describe()}")
    select = config.get("SelectTypeParameters", "")
    if "MEMORY" not in select.upper():
        not_applicable(f"memory is not a consumable resource (SelectTypeParameters={select}): a job's memory "
                       "does not limit how many share a node")
    given_cpus = slurm.leading_int(info.tres.get("cpu", "")) or 1
    given_mib = slurm.parse_size_mib(info.tres.get("mem", ""))
    part = partition_of(compute_node) or info.raw.get("Partition", "?")
    usable = job_cpus(name, part)  # CPUEfctv, at most the partition's MaxCPUsPerNode
    by_cpus, by_memory = node.fits(given_cpus, given_mib, usable)
    if by_memory < by_cpus:
        defaults = slurm.partition_settings(controller, part)
        said = ", ".join(f"{where} {k}={v}" for where, settings in (("slurm.conf", config), (f"partition {part}", defaults))
                         for k in ("DefMemPerCPU", "DefMemPerNode") if (v := settings.get(k)) not in (None, "", "UNLIMITED"))
        idle = usable - by_memory * given_cpus
        raise AssertionError(
            f"{name}: a one-task job without --mem (job {info.job_id}, partition {part}) is given {given_mib:g} MiB "
            f"of the {node.job_memory_mb} MiB jobs may use on the node: only {by_memory} such job"
            f"{'' if by_memory == 1 else 's'} fit{'s' if by_memory == 1 else ''} at a time, and {idle} of its "
            f"{usable} CPUs stay idle ({said or 'no DefMemPerCPU or DefMemPerNode is set'}). Give jobs a "
            f"default of at most {node.job_memory_mb // usable} MiB per CPU (DefMemPerCPU in slurm.conf, and "
            "no larger DefMemPerCPU or DefMemPerNode on the partition), or make the partition OverSubscribe=EXCLUSIVE "
            "if its jobs are meant to have whole nodes")


def _memory_job(controller, place_on, thresholds, mem: int, use: int):
    def probe(n):
        info, r = slurm.srun_job(controller, f"{place_on(n)} -n1 --mem={mem}", HOG.format(mib=use),
                                 timeout=thresholds.job_start_s_max)
        assert info is not None, f"the job did not start on {n.name}: {r.describe()}"
        return info, r
    return probe


def test_job_over_its_memory_is_oom_killed(compute_node, controller, place_on, thresholds, each_node):
    """A job using 4x its ``--mem`` is killed by the memory cgroup and Slurm records OUT_OF_MEMORY."""
    mem = 64
    info, _ = each_node(_memory_job(controller, place_on, thresholds, mem, mem * 4))
    assert info.state == "OUT_OF_MEMORY", (
        f"{compute_node.name}: job {info.job_id} used {mem * 4} MiB with --mem={mem} and ended "
        f"{info.state} (exit {info.exit_code}), not OUT_OF_MEMORY: "
        "the memory limit is not enforced (cgroup.conf ConstrainRAMSpace?)"
    )


def test_job_within_its_memory_completes(compute_node, controller, place_on, thresholds, each_node):
    mem = 128
    info, r = each_node(_memory_job(controller, place_on, thresholds, mem, mem // 4))
    assert info.state == "COMPLETED", (
        f"{compute_node.name}: job {info.job_id} using {mem // 4} MiB of --mem={mem} ended "
        f"{info.state} (exit {info.exit_code}), expected COMPLETED"
        + (": jobs are held to less memory than they ask for (cgroup.conf AllowedRAMSpace below 100?)"
           if info.state == "OUT_OF_MEMORY" else "") + f": {r.describe()}"
    )


def test_processes_a_job_leaves_behind_are_killed_when_it_ends(compute_node, controller, cluster, place_on,
                                                                thresholds, each_node):
    """A step that starts a process in its own session (``setsid``, reparented to init) and
    exits: Slurm's process tracking must still find it and kill it with the job, or every job
    can leave work running outside any allocation (proctrack/cgroup finds it by its cgroup)."""
    def probe(n):
        # unique per node and run: a node's check must never see (or kill) another's process
        marker = f"9876.{os.getpid()}{cluster.nodes.index(n):04d}"
        try:
            r = slurm.srun(controller, f"{place_on(n)} -n1", isolation.escape_command(marker),
                           timeout=thresholds.job_start_s_max)
            assert r.ok and "started" in r.stdout, f"{n.name}: the step failed: {r.describe()}"
            deadline = time.monotonic() + thresholds.job_cleanup_s_max
            left = isolation.leftover_pids(n, marker)
            while left and time.monotonic() < deadline:
                time.sleep(0.25)
                left = isolation.leftover_pids(n, marker)
            return marker, left
        finally:
            isolation.kill_leftovers(n, marker)

    marker, left = each_node(probe)
    if left:
        track = slurm.config_value(controller, "ProctrackType")
        raise AssertionError(
            f"{compute_node.name}: a process the job started in its own session (sleep {marker}, pid "
            f"{', '.join(map(str, left))}) still runs {thresholds.job_cleanup_s_max:g} s after the job ended "
            f"(thresholds.job_cleanup_s_max): Slurm did not track it "
            f"(ProctrackType={track or 'unknown'}; proctrack/cgroup kills everything in the job's cgroup)")


@pytest.mark.requires("memlock")
def test_job_gets_the_locked_memory_limit(compute_node, controller, place_on, hpc_config, thresholds, each_node):
    """A job's ``ulimit -l`` is ``slurm.job_memlock`` (unlimited by default): MPI over RDMA
    registers memory and fails with the 64 KiB or 8 MiB a login shell has."""
    want = hpc_config.slurm.job_memlock
    r = each_node(lambda n: slurm.srun(controller, f"{place_on(n)} -n1", "ulimit -l", timeout=thresholds.job_start_s_max))
    assert r.ok, f"{compute_node.name}: a step failed: {r.describe()}"
    got = isolation.parse_ulimit(r.stdout)
    ok = got == "unlimited" if want == "unlimited" else (got == "unlimited" or (got is not None and got >= want))
    assert ok, (
        f"{compute_node.name}: a job's locked-memory limit is {got if got is not None else r.stdout.strip()!r}"
        f"{' KiB' if isinstance(got, int) else ''}, the config wants {want}{'' if want == 'unlimited' else ' KiB'} "
        "(slurm.job_memlock): start slurmd with LimitMEMLOCK=infinity and set "
        "PropagateResourceLimitsExcept=MEMLOCK in slurm.conf (else jobs get the limit of the shell srun ran in)")


def _device_step(controller, place_on, gres_devices, gres: str, timeout: float):
    """A probe: the device facts of a one-task step (``gres``) on the node, over its GPU files."""
    def probe(n):
        devices = list(gres_devices[n.name].files)
        r = slurm.srun(controller, f"{place_on(n)} -n1 {gres}", isolation.step_facts_command(devices), timeout=timeout)
        assert r.ok, f"{n.name}: a step ({gres or 'no GRES'}) failed: {r.describe()}"
        return isolation.parse_step_facts(r.stdout)[0]
    return probe


def test_job_without_gres_cannot_open_any_gpu(gpu_node, controller, place_on, gres_devices, gpu_device_files,
                                              thresholds, each_node):
    devices = gpu_device_files
    facts = each_node(_device_step(controller, place_on, gres_devices, "", thresholds.job_start_s_max))
    assert not facts.opened, (
        f"{gpu_node.name}: a job without --gres can open {', '.join(facts.opened)} "
        "(the devices cgroup does not confine GPUs: cgroup.conf ConstrainDevices?)"
    )
    assert facts.denied == sorted(devices), f"{gpu_node.name}: unexpected device states {facts.devices}"


def test_job_with_one_gpu_opens_exactly_its_own(gpu_node, controller, place_on, gres_devices, gpu_device_files,
                                                thresholds, each_node):
    devices = gpu_device_files
    facts = each_node(_device_step(controller, place_on, gres_devices, "--gres=gpu:1", thresholds.job_start_s_max))
    assert len(facts.opened) == 1, (
        f"{gpu_node.name}: a job holding one GPU can open {len(facts.opened)} GPU devices "
        f"({', '.join(facts.opened) or 'none'}; all: {facts.devices})"
    )
    if facts.step_gpus:
        own = devices[int(facts.step_gpus[0])] if int(facts.step_gpus[0]) < len(devices) else None
        assert own is None or facts.opened == [own], (
            f"{gpu_node.name}: the job holds GPU {facts.step_gpus[0]} ({own}) but can open {facts.opened}"
        )
