"""Layer 2: munge works across nodes, slurmctld answers, every configured node is registered,
usable, and has the CPUs, memory, GRES and features the config promises; jobs run on every node,
and a job constrained to a feature only where it is."""

from __future__ import annotations

import re

import pytest

from pytest_hpcvalidate.capabilities import not_applicable
from pytest_hpcvalidate.hostlist import expand, fold
from pytest_hpcvalidate.probes import munge, network, slurm, storage

from ..conftest import partition_node_names

SLURMCTLD_PORT = 6817
SLURMD_PORT = 6818


def test_munge_credential_from_node_decodes_on_controller(peer_node, controller, each_node):
    result = each_node(lambda n: munge.cross_decode(n, controller))
    assert result.ok, result.describe()


def test_munge_credential_from_controller_decodes_on_node(peer_node, controller, each_node):
    result = each_node(lambda n: munge.cross_decode(controller, n))
    assert result.ok, result.describe()


def test_slurmctld_answers(controller):
    """Every controller slurm.conf names (SlurmctldHost: the primary and any backups) answers:
    a backup that is down leaves the cluster without failover, and nothing else notices."""
    result = controller.run("scontrol ping", timeout=30)
    controllers = slurm.parse_ping(result.stdout)
    assert controllers, f"slurmctld does not answer: {result.describe()}"
    down = [f"{role} {host}" for role, host, state in controllers if state != "UP"]
    assert not down, (f"slurmctld is DOWN on {', '.join(down)} (scontrol ping on {controller.name}: "
                      f"{'; '.join(f'{r} {h} {s}' for r, h, s in controllers)}): start it there, or remove "
                      f"that SlurmctldHost line")


def test_node_registered_and_usable(compute_node, slurm_nodes):
    sn = slurm_nodes.get(compute_node.name)
    assert sn is not None, f"{compute_node.name} is not registered in Slurm (known: {', '.join(sorted(slurm_nodes)) or 'none'})"
    assert sn.usable, f"{compute_node.name} is {sn.state_text} in Slurm" + (f", Reason={sn.reason}" if sn.reason else "")


def test_node_resources_match_config(compute_node, slurm_nodes, node_spec):
    want = node_spec[compute_node.name]
    sn = slurm_nodes.get(compute_node.name)
    assert sn is not None, f"{compute_node.name} is not registered in Slurm"
    problems = []
    if sn.cpus != want.cpus:
        problems.append(f"CPUs {sn.cpus}, config says {want.cpus}")
    if sn.real_memory_mb != want.memory_mb:
        problems.append(f"RealMemory {sn.real_memory_mb} MiB, config says {want.memory_mb}")
    if sn.gpu_count() != want.gpus:
        gres = ",".join(f"{kind}:{count}" for kind, count in sn.gres.items()) or "none"
        problems.append(f"GRES {gres}, config says " + (f"gpu:{want.gpu_type}:{want.gpus}" if want.gpus else "none"))
    if want.features is not None and set(sn.features) != set(want.features):
        problems.append(f"Features {','.join(sn.features) or 'none'}, config says {','.join(want.features) or 'none'}")
    assert not problems, f"{compute_node.name} in Slurm: " + "; ".join(problems)


def test_node_has_the_cpus_and_memory_slurm_gives_its_jobs(compute_node, slurm_nodes, slurm_config, each_node):
    """Slurm sizes jobs by slurm.conf's CPUs and RealMemory. Where slurmd takes those as given
    (``SlurmdParameters=config_overrides``: cloud nodes, sites that pin the numbers) a node with
    cores offline or a DIMM lost still takes jobs sized for the whole: they oversubscribe its
    CPUs or are OOM-killed, and one whose scratch is smaller than TmpDisk runs ``--tmp`` jobs
    out of disk. Its online CPUs must be at least CPUTot, its MemTotal at least RealMemory, and
    its TmpFS at least TmpDisk."""
    if declared := compute_node.facts.get("declared_resources"):
        not_applicable(f"{compute_node.name}: its provider declares the config's CPUs and memory to Slurm whatever "
                       f"the machine got ({declared}): there is nothing real to hold them against")
    sn = slurm_nodes.get(compute_node.name)
    assert sn is not None, f"{compute_node.name} is not registered in Slurm"
    tmpfs = slurm_config.get("TmpFS") or "/tmp"
    r = each_node(lambda n: n.run(slurm.capacity_command(tmpfs), timeout=30))
    have = slurm.parse_capacity(r.stdout)
    assert r.ok and None not in (have.cpus, have.memory_mib, have.tmp_mib), (
        f"{compute_node.name}: could not read its online CPUs, MemTotal and the size of TmpFS {tmpfs}: {r.describe()}")
    short = slurm.capacity_shortfalls(sn, have, tmpfs)
    assert not short, (
        f"{compute_node.name} has less than Slurm gives jobs there: " + "; ".join(short)
        + f". Jobs sized for slurm.conf's numbers oversubscribe its CPUs or are OOM-killed, and slurmd does not "
        f"refuse them ({slurm.shown(slurm_config, 'SlurmdParameters')}): repair {compute_node.name} (cores offline, "
        "a DIMM lost, scratch not mounted), or lower CPUs/RealMemory/TmpDisk on its NodeName line")


def test_node_cpu_layout_is_the_hardwares(compute_node, slurm_nodes, each_node):
    """Slurm schedules and binds by slurm.conf's layout of a node's CPUs (Boards, Sockets,
    CoresPerSocket, ThreadsPerCore; ``CPUs=`` alone means one socket per CPU), and accepts a
    layout that differs from the hardware as long as the CPUs add up: slurmd only logs 'Node
    configuration differs from hardware'. The layout must be what ``slurmd -C`` finds on the
    node (CPUs= may still be its cores instead of its threads)."""
    if why := compute_node.facts.get("cpu_layout_differs"):
        not_applicable(f"{compute_node.name}: {why}")
    sn = slurm_nodes.get(compute_node.name)
    assert sn is not None, f"{compute_node.name} is not registered in Slurm"
    r = each_node(lambda n: n.run(slurm.HARDWARE_COMMAND, timeout=30))
    hardware = slurm.parse_hardware(r.stdout)
    assert r.ok and hardware, f"{compute_node.name}: slurmd -C did not say what its hardware is: {r.describe()}"
    declared = slurm.declared_topology(sn)
    assert declared, f"{compute_node.name}: scontrol show node gives no CPU layout: {' '.join(f'{k}={v}' for k, v in sn.raw.items())}"
    wrong = slurm.topology_differences(declared, hardware)
    assert not wrong, (
        f"{compute_node.name}: Slurm lays out its {declared.cpus} CPUs as {declared.describe()}, the hardware "
        f"(slurmd -C) is {hardware.describe()} with {hardware.threads} CPUs: " + "; ".join(wrong)
        + f". {slurm.topology_consequence(declared, hardware)}. Put slurmd -C's layout on its NodeName line: "
        f"{hardware.node_line()}")


def test_partitions_match_config(controller, hpc_config, node_spec, slurm_nodes):
    """Slurm has the config's partitions, its default, OverSubscribe=FORCE exactly where the config
    says jobs share CPUs, each partition UP with its compute nodes (of those the config knows: a
    partition may hold nodes outside it), and its MaxTime where the config gives one."""
    parts = slurm.show_partitions(controller)
    want = {p.name: p for p in hpc_config.slurm.partitions}
    assert set(parts) == set(want), f"partitions in Slurm {sorted(parts)}, config says {sorted(want)}"
    default = hpc_config.slurm.default_partition.name
    actual_default = [p.name for p in parts.values() if p.default]
    assert actual_default == [default], f"default partition is {actual_default or 'none'}, config says {default}"
    sharing = [f"{name} OverSubscribe={p.oversubscribe or '?'} (config: oversubscribe {want[name].oversubscribe})"
               for name, p in sorted(parts.items()) if p.forces_sharing != want[name].oversubscribe]
    assert not sharing, (
        "partitions where Slurm forces jobs to share CPUs other than the config says: " + "; ".join(sharing)
        + " (set OverSubscribe=FORCE only where slurm.partitions[].oversubscribe says jobs share on purpose)")
    known = {name for name, n in node_spec.items() if n.role == "compute"}
    wrong = []
    for name, nodes in partition_node_names(hpc_config, node_spec):
        have = known & (set(slurm_nodes) if parts[name].nodes == "ALL" else set(expand(parts[name].nodes)))
        if missing := sorted(set(nodes) - have):
            wrong.append(f"{name} lacks {fold(missing)}")
        if extra := sorted(have - set(nodes)):
            wrong.append(f"{name} also holds {fold(extra)}")
        if parts[name].state != "UP":
            wrong.append(f"{name} State={parts[name].state or '?'} (jobs queue there and never start: "
                         f"scontrol update PartitionName={name} State=UP)")
        limit = want[name].max_time
        if limit is not None and slurm.time_limit_seconds(parts[name].max_time) != slurm.time_limit_seconds(limit):
            wrong.append(f"{name} MaxTime={parts[name].max_time} (config: max_time {limit})")
    assert not wrong, ("partitions in Slurm differ from the config: " + "; ".join(wrong)
                       + " (fix the PartitionName lines of slurm.conf, or slurm.partitions in the config)")


@pytest.mark.requires("root")
def test_munge_key_is_private_to_munged(node, each_node):
    """The key munged uses is mode 0400/0600 and owned by the user munged runs as."""
    facts = each_node(munge.key_facts)
    problems = facts.problems()
    assert not problems, f"munge on {node.name}: " + "; ".join(problems)


@pytest.fixture(scope="module")
def slurm_config(controller):
    config = slurm.show_config(controller)
    assert config, f"scontrol show config on {controller.name} gave nothing"
    return config


def test_slurmd_runs_the_installed_release_of_the_controllers_slurm(compute_node, slurm_nodes, slurm_config, each_node):
    """The node's slurmd registered with slurmctld's Slurm version, and it is the slurmd the
    node has installed now: a node a partial upgrade left behind, or whose slurmd was not
    restarted after its package was upgraded, runs other code than its peers."""
    installed, problem = each_node(slurm.installed_slurmd_version)
    sn = slurm_nodes.get(compute_node.name)
    assert sn is not None, f"{compute_node.name} is not registered in Slurm"
    problems = slurm.version_problems(sn.raw.get("Version", ""), slurm_config.get("SLURM_VERSION", ""), installed)
    assert not problems, f"{compute_node.name}: " + "; ".join(problems)
    if problem:  # a slurmd outside the login PATH (a source build elsewhere): the installed half is unknown
        pytest.skip(f"{compute_node.name}: {problem}; its registered release is slurmctld's")


def test_prolog_and_epilog_scripts_are_in_place(node, slurm_config, each_node):
    """Every Prolog/Epilog script the running configuration names exists as an executable file
    where it runs (compute nodes: Prolog, Epilog, TaskProlog, TaskEpilog, HealthCheckProgram;
    the controller: PrologSlurmctld, EpilogSlurmctld): a missing prolog or epilog drains the node
    after its next job, a missing health check program leaves the node's health unchecked."""
    if node.role == "login":
        not_applicable(f"{node.name} is a login node: Slurm runs no Prolog, Epilog or health check there")

    def probe(n):
        return slurm.script_problems(n, slurm.configured_scripts(slurm_config, slurm.scripts_run_on(n)))

    problems = each_node(probe)
    assert not problems, f"{node.name}: " + "; ".join(problems)


def test_slurm_configs_and_scripts_can_be_changed_only_by_root_or_slurm(node, slurm_config, each_node):
    """Slurm's configuration files (``*.conf`` beside the slurm.conf the node reads) and the
    scripts it runs as root there (Prolog, Epilog, the health check on compute nodes;
    PrologSlurmctld, EpilogSlurmctld on the controller), and the directories holding them, are
    owned by root or SlurmUser and writable by no one else: a user who can change an epilog or
    gres.conf runs commands as root, or takes GPUs, on every node that reads it."""
    trusted = {0} | ({uid} if (uid := slurm.slurm_user_uid(slurm_config)) is not None else set())

    def probe(n):
        conf = slurm.config_dir(n)
        paths = [f"{conf}/*.conf"] + [path for _, path in slurm.configured_scripts(slurm_config, slurm.scripts_run_on(n))]
        return slurm.file_modes(n, paths)

    files = each_node(probe)
    assert files, f"{node.name}: none of Slurm's configuration files could be read (stat)"
    unsafe = slurm.unsafe_modes(files, trusted)
    assert not unsafe, (
        f"{node.name}: users other than root and SlurmUser {slurm_config.get('SlurmUser', '?')} can change what Slurm "
        "reads or runs as root: " + "; ".join(unsafe) + ". chown them to root and chmod go-w")


@pytest.fixture(scope="module")
def controller_conf(controller):
    digest = slurm.config_digest(controller)
    assert digest.sha256, f"cannot read {digest.path} on {controller.name}: {digest.error}"
    return digest


def test_slurm_conf_is_the_controllers(peer_node, controller_conf, each_node):
    """The slurm.conf a compute or login node reads is the controller's, byte for byte: a node
    with a stale copy runs with other limits, partitions or plugins after its next restart; a
    login node's sends jobs with another idea of the partitions and their limits."""
    mine = each_node(slurm.config_digest)
    name = peer_node.name
    assert mine.sha256, f"cannot read {mine.path} on {name}: {mine.error}"
    assert mine.sha256 == controller_conf.sha256, (
        f"{name}: {mine.path} (sha256 {mine.sha256[:12]}…) differs from {controller_conf.node}'s "
        f"{controller_conf.path} (sha256 {controller_conf.sha256[:12]}…): copy the controller's to the node "
        + ("(or run configless) and restart its slurmd" if peer_node.role == "compute" else "(or run configless)"))


def test_slurm_state_directory_has_room(node, slurm_config, thresholds, metric, each_node):
    """Where Slurm keeps its state (the controller's StateSaveLocation, each compute node's
    SlurmdSpoolDir) has ``thresholds.slurm_dir_free_gib_min`` free: full, slurmctld cannot save
    job state and slurmd cannot start jobs."""
    if node.role == "login":
        not_applicable(f"{node.name} is a login node: no Slurm daemon keeps state there")

    def probe(n):
        if n.role == "login":  # gathered with the others' (this check is not applicable there)
            return None
        setting, path = slurm.state_dir(slurm_config, n)
        return (setting, path, *storage.disk_space(n, path))

    setting, path, space, r = each_node(probe)
    assert space is not None, f"{node.name}: cannot read the free space of {setting}={path}: {r.describe()}"
    m = metric("slurm_state_free_gib", round(space.avail_gib, 2), "GiB", thresholds.slurm_dir_free_gib_min, ">=",
               node=node.name)
    assert m.passed, (f"{node.name}: {setting}={path} (on {space.mounted_on}) has {space.avail_gib:.2f} GiB free: "
                      f"{m.message}")


def test_slurm_ports_reachable(peer_node, controller, each_node):
    """slurmd reaches slurmctld (6817) and slurmctld reaches slurmd (6818) over the cluster
    network; a login node (no slurmd) reaches slurmctld, where its users' srun and sbatch go."""
    def probe(n):
        problems = []
        err = network.tcp_connect(n, controller.address, SLURMCTLD_PORT)
        if err:
            problems.append(f"{n.name} -> {controller.name}:{SLURMCTLD_PORT} (slurmctld): {err}")
        err = network.tcp_connect(controller, n.address, SLURMD_PORT) if n.role == "compute" else ""
        if err:
            problems.append(f"{controller.name} -> {n.name}:{SLURMD_PORT} (slurmd): {err}")
        return problems

    problems = each_node(probe)
    assert not problems, "Slurm ports blocked: " + "; ".join(problems)


def test_a_job_step_runs_on_every_node_of_each_partition(controller, hpc_config, node_spec, thresholds):
    """``srun -p P -N<all of P>`` in every partition: together they cover every compute node."""
    failures = []
    for part, names in partition_node_names(hpc_config, node_spec):
        result = slurm.srun(controller, f"-p {part} -N{len(names)} --ntasks-per-node=1", "hostname",
                            timeout=thresholds.job_start_s_max)
        if not result.ok:
            failures.append(f"partition {part}: srun -N{len(names)} failed: {result.describe()}")
            continue
        ran = sorted(result.stdout.split())
        if ran != names:
            failures.append(f"partition {part}: srun -N{len(names)} ran on {ran}, expected {names}")
    assert not failures, "; ".join(failures)


#: what slurmctld answers a job no node of the partition can ever satisfy
NEVER_SATISFIABLE = "Requested node configuration is not available"


def test_a_job_constrained_to_a_feature_runs_only_on_the_nodes_that_have_it(controller, hpc_config, node_spec,
                                                                            thresholds):
    """For each feature of ``compute[i].features``, in the partition holding most of its nodes:
    ``srun --constraint=<feature> -N<its nodes there>`` runs on exactly those nodes, and one
    node more is refused as never satisfiable (where the partition has more nodes): a feature
    missing from a node's slurm.conf line leaves constrained jobs pending for ever, one on a
    node without the hardware sends them where they fail."""
    having: dict[str, set[str]] = {}
    for n in node_spec.values():
        for feature in (n.features or ()) if n.role == "compute" else ():
            having.setdefault(feature, set()).add(n.name)
    if not having:
        not_applicable("no compute group declares Slurm features (compute[i].features)")
    default = hpc_config.slurm.default_partition.name
    failures = []
    for feature, nodes in sorted(having.items()):
        part, members = max(partition_node_names(hpc_config, node_spec),
                            key=lambda pm: (len(nodes.intersection(pm[1])), pm[0] == default))
        expected = sorted(nodes.intersection(members))
        if not expected:
            failures.append(f"--constraint={feature}: no partition holds its nodes {','.join(sorted(nodes))}")
            continue
        ask = f"-p {part} --ntasks-per-node=1 --constraint={feature}"
        r = slurm.srun(controller, f"{ask} -N{len(expected)}", "hostname", timeout=thresholds.job_start_s_max)
        ran = sorted(r.stdout.split())
        if not r.ok or ran != expected:
            failures.append(f"srun {ask} -N{len(expected)} " + (f"ran on {','.join(ran)}" if r.ok else
                            f"failed ({r.describe()})") + f"; the config gives {feature} to {','.join(expected)} of {part}")
            continue
        if len(members) > len(expected):
            more = slurm.srun(controller, f"{ask} -N{len(expected) + 1}", "hostname", timeout=thresholds.job_start_s_max)
            if more.ok or NEVER_SATISFIABLE not in more.stderr:
                failures.append(f"srun {ask} -N{len(expected) + 1} " + (
                    f"ran on {','.join(sorted(more.stdout.split()))}" if more.ok else f"failed otherwise ({more.describe()})")
                    + f": only {','.join(expected)} of {part} should have {feature}")
    assert not failures, ("jobs constrained to a feature do not run where the config gives it: " + "; ".join(failures)
                          + ". Fix the Features= of the NodeName lines in slurm.conf (scontrol show node lists them)")


def test_batch_job_completes(controller, cluster, thresholds):
    """``sbatch`` accepts a job, it runs and ends COMPLETED with exit code 0:0, and its output
    file holds what it printed, readable where it was submitted (in the directory every node
    shares; without one, the state alone is checked)."""
    shared = cluster.shared_dir
    run = slurm.batch_run(controller, shared, "batch", "-N1", 'echo "hpcv-batch $SLURM_JOB_ID $(hostname)"',
                          timeout=thresholds.job_start_s_max)
    job_id, info = run.job_id, run.info
    assert job_id is not None, f"sbatch failed: {run.submitted.describe()}"
    assert info is not None, f"job {job_id} vanished from slurmctld before it finished"
    assert info.state == "COMPLETED" and info.exit_code == "0:0", (
        f"batch job {job_id} ended {info.state} (exit {info.exit_code}, nodes {info.nodes or 'none'}"
        + (f", reason {info.reason}" if info.reason and info.reason != "None" else "") + ")"
    )
    if run.output is None:
        return
    assert run.output.ok and run.output.stdout.split() == ["hpcv-batch", str(job_id), info.nodes], (
        f"batch job {job_id} ran on {info.nodes} but its output file {run.path} "
        + (f"holds {run.output.stdout.strip()[:200]!r}" if run.output.ok
           else f"is not readable on {controller.name} ({run.output.stderr.strip()})")
        + f", expected 'hpcv-batch {job_id} {info.nodes}': is {shared} shared between {info.nodes} and {controller.name}?"
    )


@pytest.mark.requires("accounting")
def test_accounting_records_the_job(controller, thresholds):
    """With accounting configured, ``sacct`` shows a finished job with its final state (slurmdbd
    gets records asynchronously: polled until the job's final state arrives or time runs out)."""
    job_id, submitted = slurm.sbatch(controller, "-N1 -o /dev/null", "true")
    assert job_id is not None, f"sbatch failed: {submitted.describe()}"
    slurm.wait_job(controller, job_id, timeout=thresholds.job_start_s_max)
    row, r = slurm.sacct_record(controller, job_id, lambda row: row[1] == "COMPLETED", thresholds.job_start_s_max)
    assert r.ok, f"sacct failed: {r.describe()}"
    assert row and row[1] == "COMPLETED", (
        f"sacct shows job {job_id} as {row or 'nothing'} {thresholds.job_start_s_max:g}s after it ended, "
        "expected COMPLETED"
    )


def _sampling_period_s(controller) -> float:
    """JobAcctGatherFrequency's task period in seconds (Slurm's default: 30)."""
    value = slurm.config_value(controller, "JobAcctGatherFrequency")
    m = re.search(r"(?:^|,)task=(\d+)", value) or re.fullmatch(r"(\d+)", value)
    return float(m.group(1)) if m else 30.0


#: the memory-use check's step holds this much (a shell variable), and sacct must see at least
#: the fraction of it (the shell's copy is transient; what counts is that memory is gathered)
HOLD_MIB = 96
RSS_SEEN_MIN_FRACTION = 2 / 3


@pytest.mark.requires("accounting")
def test_accounting_records_a_steps_memory_use(controller, thresholds):
    """A step holding 96 MiB for longer than the sampling period: ``sacct`` reports a MaxRSS of
    at least 64 MiB for it (what memory-efficiency reports and users' ``seff`` read)."""
    hold_s = min(_sampling_period_s(controller), 60.0) + 2.0
    hog = f'x=$(head -c {HOLD_MIB}m /dev/zero | tr "\\0" a); sleep {hold_s:g}; echo ${{#x}}'
    job_id, submitted = slurm.sbatch(controller, "-N1 -n1 --mem=512 -o /dev/null", f"srun -n1 /bin/sh -c '{hog}'")
    assert job_id is not None, f"sbatch failed: {submitted.describe()}"
    info = slurm.wait_job(controller, job_id, timeout=thresholds.job_start_s_max + hold_s)
    assert info is not None and info.state == "COMPLETED", f"job {job_id} ended {info.state if info else 'unseen'}"
    row, r = slurm.sacct_record(controller, f"{job_id}.0", lambda row: row[1] == "COMPLETED", thresholds.job_start_s_max,
                                "JobID,State,MaxRSS", flags="--noconvert")
    assert r.ok, f"sacct failed: {r.describe()}"
    rss = row[2].strip() if row else ""
    mib = slurm.parse_size_mib(rss) if rss else 0.0
    want = HOLD_MIB * RSS_SEEN_MIN_FRACTION
    if mib < want:
        gather = slurm.config_value(controller, "JobAcctGatherType")
        raise AssertionError(
            f"sacct gives step {job_id}.0, which held {HOLD_MIB} MiB for {hold_s:g} s, a MaxRSS of {rss or 'nothing'} "
            f"({mib:.0f} MiB; expected >= {want:.0f}): memory use is not gathered "
            f"(JobAcctGatherType={gather or 'unknown'}; jobacct_gather/linux or /cgroup records it)")
