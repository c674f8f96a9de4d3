"""Layer 3, property-based: random job shapes that fit the cluster are accepted and placed as
requested, and never oversubscribe a node's CPUs. Hypothesis draws (nodes, tasks per node,
CPUs per task, memory, GPUs); ``slurm.job_shape_examples`` in the config sets how many."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pytest_hpcvalidate.hostlist import expand
from pytest_hpcvalidate.probes import isolation, slurm
from pytest_hpcvalidate.capabilities import not_applicable


def _partitions(hpc_config, node_spec):
    compute = [n for n in node_spec.values() if n.role == "compute"]
    out = []
    for p in hpc_config.slurm.partitions:
        names = {n.name for n in compute} if p.nodes == "ALL" else set(expand(p.nodes))
        out.append((p.name, [n for n in compute if n.name in names]))
    return out


def _as_asked(name: str, cpus: int) -> int:
    return cpus


@st.composite
def job_shapes(draw, partitions, granted=_as_asked, job_cpus=None):
    """Shapes that fit every node of the partition drawn; ``granted(node, c)``: the CPUs Slurm
    gives a task of ``-c c`` there (whole cores where a core has several threads);
    ``job_cpus(node)``: the CPUs jobs may use there (default: the config's cpus)."""
    name, nodes = draw(st.sampled_from(partitions))
    usable = {x.name: job_cpus(x.name, name) if job_cpus else x.cpus for x in nodes}
    cpus = min(usable.values())
    n = draw(st.integers(1, len(nodes)))
    c = draw(st.integers(1, cpus))
    t = draw(st.integers(1, max(1, min(usable[x.name] // granted(x.name, c) for x in nodes))))
    mem = draw(st.integers(32, max(32, min(256, min(x.memory_mb for x in nodes) // 2))))
    gpus_each = min(x.gpus for x in nodes)
    g = draw(st.integers(0, gpus_each)) if gpus_each else 0
    return {"partition": name, "nodes": n, "tasks_per_node": t, "cpus_per_task": c, "mem_mb": mem, "gpus": g}


def shape_problems(shape: dict, facts: list, node_cpus: dict[str, int], constrain_cores: bool,
                   granted=_as_asked) -> list[str]:
    """What differs between the requested ``shape`` and where/how its tasks ran (``granted``:
    as in :func:`job_shapes`)."""
    problems = []
    expected_tasks = shape["nodes"] * shape["tasks_per_node"]
    if len(facts) != expected_tasks:
        problems.append(f"{len(facts)} tasks ran, expected {expected_tasks}")
    by_node = defaultdict(list)
    for f in facts:
        by_node[f.node].append(f)
    if len(by_node) != shape["nodes"]:
        problems.append(f"tasks ran on {len(by_node)} nodes ({', '.join(sorted(by_node))}), expected {shape['nodes']}")
    for node, tasks in sorted(by_node.items()):
        if len(tasks) != shape["tasks_per_node"]:
            problems.append(f"{node}: {len(tasks)} tasks, expected {shape['tasks_per_node']}")
        if constrain_cores:
            c = shape["cpus_per_task"]
            wrong = [sorted(t.cpus) for t in tasks if slurm.cpus_seen_problem(c, t.cpus, granted(node, c))]
            if wrong:
                whole = granted(node, c)
                problems.append(f"{node}: tasks pinned to {wrong}, expected {c} CPUs each"
                                + (f" (or {whole}: whole cores)" if whole != c else ""))
            used = [c for t in tasks for c in t.cpus]
            if len(used) != len(set(used)):
                problems.append(f"{node}: tasks share CPUs {sorted(c for c in set(used) if used.count(c) > 1)}")
            if len(set(used)) > node_cpus.get(node, 0):
                problems.append(f"{node}: tasks use {len(set(used))} CPUs, jobs may use {node_cpus.get(node)} there")
        if shape["gpus"]:
            wrong = [t.step_gpus for t in tasks if len(t.step_gpus or ()) != shape["gpus"]]
            if wrong:
                problems.append(f"{node}: tasks see GPUs {wrong}, expected {shape['gpus']} each")
    return problems


def test_random_job_shapes_are_placed_as_requested(controller, hpc_config, node_spec, thresholds, cpus_granted,
                                                   job_cpus):
    examples = hpc_config.slurm.job_shape_examples
    if examples == 0:
        not_applicable("slurm.job_shape_examples is 0 in the config")
    partitions = _partitions(hpc_config, node_spec)
    constrain = hpc_config.slurm.cgroup.constrain_cores

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(shape=job_shapes(partitions, cpus_granted, job_cpus))
    def check(shape):
        args = (f"-l -p {shape['partition']} -N{shape['nodes']} --ntasks-per-node={shape['tasks_per_node']} "
                f"-c {shape['cpus_per_task']} --mem={shape['mem_mb']}")
        if shape["gpus"]:
            args += f" --gres=gpu:{shape['gpus']}"
        r = slurm.srun(controller, args, isolation.step_facts_command([]), timeout=thresholds.job_start_s_max)
        assert r.ok, f"job shape {shape} that fits the cluster was not run: {r.describe()}"
        usable = {name: job_cpus(name, shape["partition"]) for name, n in node_spec.items() if n.role == "compute"}
        problems = shape_problems(shape, isolation.parse_step_facts(r.stdout), usable, constrain, cpus_granted)
        assert not problems, f"srun {args}: " + "; ".join(problems)

    check()
