"""Layer 4, containers: a Slurm step started in the image runs the image's OS on every node,
and inside it the job gets exactly what Slurm granted — CPUs, memory, GPUs, per-task variables."""

from __future__ import annotations

import pytest

from pytest_hpcvalidate.probes import containers as ctr
from pytest_hpcvalidate.probes import isolation, slurm

pytestmark = pytest.mark.requires("containers")

NODE = 'echo "NODE $(cat /proc/sys/kernel/hostname)"'


@pytest.fixture(scope="module")
def step_on_every_node(controller, cluster, runtime, all_compute_partition, thresholds):
    """One containerised step with a task on every compute node: (CommandResult, {node: Identity})."""
    n = len(cluster.compute)
    r = ctr.srun(controller, runtime, f"{all_compute_partition} -N{n} --ntasks-per-node=1 -l",
                 f"{ctr.IDENTITY}; {NODE}", timeout=thresholds.job_start_s_max + 30)
    seen = {}
    for lines in ctr.task_lines(r.stdout).values():
        node = next((ln.split(" ", 1)[1].strip() for ln in lines if ln.startswith("NODE ")), None)
        if node:
            seen[node] = ctr.parse_identity(lines)
    return r, seen


@pytest.fixture(scope="module")
def host_os(cluster):
    out = cluster.run_all("cat /etc/os-release", nodes=cluster.compute, timeout=20)
    return {name: ctr.parse_os_release(r.stdout).get("PRETTY_NAME") for name, r in out.items()}


def test_containerised_step_runs_the_image_os(compute_node, containers, step_on_every_node, image_facts, host_os):
    r, seen = step_on_every_node
    name = compute_node.name
    assert name in seen, f"{name}: the containerised step did not report from this node: {r.describe(limit=800)}"
    inside, image_os, want = seen[name].os_release, image_facts[name].os_release, containers.expect.os_release
    where = f"{name}: a step in {containers.image} reports OS {inside!r} (host: {host_os.get(name)!r}"
    assert inside and (image_os is None or inside == image_os), f"{where}, image: {image_os!r}): not the image's OS"
    assert want is None or want in inside, f"{where}): the config expects {want!r}"


# The per-node checks below run their nodes' container steps at once (each_node: one job per
# node, so they never compete for a node's CPUs or memory).

def test_cpus_per_task_inside_container(compute_node, controller, runtime, job_cpus, place_on, thresholds,
                                        cpus_granted, each_node):
    """``-c K`` for K = 1 and all the CPUs jobs may use on the node: the container sees exactly K
    CPUs (or the whole cores Slurm grants for them, where a core has several threads)."""
    def probe(node):
        problems = []
        for k in sorted({1, job_cpus(node.name)}):
            r = ctr.srun(controller, runtime, f"{place_on(node)} -n1 -c {k}", isolation.step_facts_command([]),
                         timeout=thresholds.job_start_s_max)
            facts = isolation.parse_step_facts(r.stdout)
            if not r.ok or not facts:
                problems.append(f"-c {k} failed: {r.describe()}")
            elif wrong := slurm.cpus_seen_problem(k, facts[0].cpus, cpus_granted(node.name, k)):
                problems.append(wrong)
        return problems

    problems = each_node(probe)
    assert not problems, f"{compute_node.name}: CPU confinement broken inside the container: " + "; ".join(problems)


def test_container_over_its_memory_is_killed(compute_node, controller, runtime, place_on, thresholds, each_node):
    """A containerised step within its ``--mem`` completes; one using 4x its ``--mem`` is killed
    and reported (Slurm's "Out Of Memory" / OUT_OF_MEMORY, or exit 137 through runc)."""
    mem = 64

    def probe(node):
        where = place_on(node)
        within = ctr.srun(controller, runtime, f"{where} -n1 --mem={mem * 2}", ctr.memory_hog_command(mem // 2),
                          timeout=thresholds.job_start_s_max)
        if not within.ok:
            return within, None, None
        info, r = slurm.srun_job(controller, f"{where} -n1 --mem={mem} {runtime.srun_options()}".strip(),
                                 runtime.wrap(ctr.memory_hog_command(mem * 4)), timeout=thresholds.job_start_s_max)
        return within, info, r

    within, info, r = each_node(probe)
    assert within.ok, f"{compute_node.name}: a container step within its memory failed: {within.describe()}"
    state = info.state if info else None
    assert ctr.oom_killed(r, state), (
        f"{compute_node.name}: a container step using {mem * 4} MiB with --mem={mem} was not killed "
        f"(job state {state or 'unknown'}, exit {r.exit_code}): the memory limit does not hold inside the container"
    )


def test_container_gets_exactly_the_gpus_granted(gpu_node, controller, runtime, node_spec, place_on, gres_devices,
                                                  gpu_device_files, thresholds, each_node):
    """``--gres=gpu:N`` for every N up to the node's count: exactly N GPU devices open inside the
    container; without GRES none does."""
    def probe(node):
        devices = list(gres_devices[node.name].files)
        problems = []
        for n in range(node_spec[node.name].gpus + 1):
            gres = f"--gres=gpu:{n}" if n else ""
            r = ctr.srun(controller, runtime, f"{place_on(node)} -n1 {gres}", isolation.step_facts_command(devices),
                         timeout=thresholds.job_start_s_max, gpu=n > 0)
            facts = isolation.parse_step_facts(r.stdout)
            if not r.ok or not facts:
                problems.append(f"{gres or 'no GRES'}: step failed: {r.describe()}")
            elif len(facts[0].opened) != n:
                problems.append(f"{gres or 'no GRES'}: the container can open {len(facts[0].opened)} GPU devices "
                                f"({', '.join(facts[0].opened) or 'none'}; all: {facts[0].devices})")
        return problems

    problems = each_node(probe)  # gpu_device_files has failed the test already where Slurm names no file
    assert not problems, f"{gpu_node.name}: " + "; ".join(problems)


def _task_shape(spec, cpus: int) -> tuple[int, str]:
    """(tasks, GRES option) of the per-task check's step on a node where jobs may use ``cpus``."""
    return max(1, min(2, cpus)), "--gres=gpu:1" if spec.gpus else ""


def test_per_task_variables_inside_container(compute_node, controller, runtime, node_spec, job_cpus, place_on,
                                             thresholds, each_node):
    """Every task of a multi-task containerised step has its own SLURM_PROCID; on GPU nodes each
    task holding a GPU sees CUDA_VISIBLE_DEVICES."""
    def probe(node):
        ntasks, gres = _task_shape(node_spec[node.name], job_cpus(node.name))
        return ctr.srun(controller, runtime, f"{place_on(node)} -n{ntasks} -l {gres}",
                        f"{ctr.IDENTITY}; {isolation.step_facts_command([])}", timeout=thresholds.job_start_s_max,
                        gpu=bool(gres))

    ntasks, gres = _task_shape(node_spec[compute_node.name], job_cpus(compute_node.name))
    r = each_node(probe)
    assert r.ok, f"{compute_node.name}: a {ntasks}-task container step failed: {r.describe()}"
    tasks = ctr.task_lines(r.stdout)
    procids = sorted(str(ctr.parse_identity(lines).procid) for lines in tasks.values())
    assert procids == [str(i) for i in range(ntasks)], (
        f"{compute_node.name}: tasks inside the container see SLURM_PROCID {procids}, expected 0..{ntasks - 1}"
    )
    if gres:
        unset = [t for t, lines in tasks.items()
                 if not (f := isolation.parse_step_facts("\n".join(lines))) or f[0].cuda_visible is None]
        assert not unset, f"{compute_node.name}: tasks {unset} holding a GPU see no CUDA_VISIBLE_DEVICES in the container"
