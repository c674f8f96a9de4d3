"""Layer 3, GRES: gres.conf matches the devices and the config; ``--gres=gpu:N`` gives exactly
N GPUs; asking for more than a node has is refused; concurrent jobs get different GPUs."""

from __future__ import annotations

import shlex

from pytest_hpcvalidate.probes import isolation, slurm
from pytest_hpcvalidate.capabilities import not_applicable


def _step(controller, where: str, gres: str, devices: list[str], timeout: float, hold_s: float = 0.0):
    return slurm.srun(controller, f"{where} -n1 {gres}", isolation.step_facts_command(devices, hold_s), timeout=timeout)


def test_gres_conf_matches_devices_and_config(gpu_node, node_spec, gres_devices):
    want = node_spec[gpu_node.name].gpus
    found = gres_devices[gpu_node.name]
    files = list(found.files)
    assert len(files) == want, (
        f"{gpu_node.name}: Slurm gives it {len(files)} GPU device files ({', '.join(files) or 'none'}; "
        f"from {found.source}), the config says {want}"
    )
    r = gpu_node.run("for f in " + " ".join(shlex.quote(f) for f in files) + "; do "
                     "if [ -c \"$f\" ]; then echo \"$f ok\"; else echo \"$f missing\"; fi; done", timeout=20)
    missing = [line.split()[0] for line in r.stdout.splitlines() if line.endswith(" missing")]
    assert r.ok and not missing, (
        f"{gpu_node.name}: gres.conf names device files that are not character devices on the node: "
        f"{', '.join(missing) or r.describe()}"
    )


def test_gres_request_gets_exactly_n_gpus(gpu_node, controller, place_on, node_spec, gres_files, thresholds,
                                          each_node):
    """For every N up to the node's count: CUDA_VISIBLE_DEVICES and Slurm's GPU list have N entries
    (every GPU node's steps at once)."""
    def probe(node):
        problems = []
        for n in range(1, node_spec[node.name].gpus + 1):
            r = _step(controller, place_on(node), f"--gres=gpu:{n}", gres_files[node.name], thresholds.job_start_s_max)
            if not r.ok:
                problems.append(f"--gres=gpu:{n} failed: {r.describe()}")
                continue
            facts = isolation.parse_step_facts(r.stdout)[0]
            cvd = facts.cuda_visible or ()
            gpus = facts.step_gpus or ()
            if len(cvd) != n or len(gpus) != n:
                problems.append(f"--gres=gpu:{n}: CUDA_VISIBLE_DEVICES={','.join(cvd) or 'unset'}, "
                                f"Slurm GPUs={','.join(gpus) or 'none'} (expected {n} each)")
        return problems

    problems = each_node(probe)
    assert not problems, f"{gpu_node.name}: " + "; ".join(problems)


def test_no_gres_request_gets_no_gpu_variables(gpu_node, controller, place_on, gres_files, thresholds, each_node):
    r = each_node(lambda n: _step(controller, place_on(n), "", gres_files[n.name], thresholds.job_start_s_max))
    assert r.ok, f"a step without GRES failed on {gpu_node.name}: {r.describe()}"
    facts = isolation.parse_step_facts(r.stdout)[0]
    assert not facts.step_gpus and not facts.cuda_visible, (
        f"{gpu_node.name}: a step without --gres sees "
        f"CUDA_VISIBLE_DEVICES={','.join(facts.cuda_visible or ()) or 'unset'}, "
        f"Slurm GPUs={','.join(facts.step_gpus or ()) or 'unset'}: CUDA programs in jobs without GPUs will try GPUs "
        "they were not given (a TaskProlog or a profile script that sets it for every job?)"
    )


def test_more_gpus_than_the_node_has_is_refused(gpu_node, controller, node_spec, place_on, thresholds, each_node):
    too_many = node_spec[gpu_node.name].gpus + 1
    r = each_node(lambda n: slurm.srun(controller, f"{place_on(n)} --gres=gpu:{node_spec[n.name].gpus + 1} "
                                       "--immediate=5", "true", timeout=thresholds.job_start_s_max))
    assert not r.ok, f"{gpu_node.name} has {too_many - 1} GPUs but a step asking for {too_many} ran"
    assert "not available" in r.stderr or "Invalid generic resource" in r.stderr, (
        f"--gres=gpu:{too_many} on {gpu_node.name} failed, but not because it was refused: {r.describe()}"
    )


def test_concurrent_single_gpu_jobs_get_different_gpus(gpu_node, controller, node_spec, job_cpus, gres_files, place_on,
                                                       thresholds, each_node):
    def shareable(name: str) -> bool:
        return node_spec[name].gpus >= 2 and job_cpus(name) >= 2

    if not shareable(gpu_node.name):
        not_applicable(f"{gpu_node.name} has {node_spec[gpu_node.name].gpus} GPU(s) and {job_cpus(gpu_node.name)} "
                       "CPU(s) jobs may use: two 1-GPU jobs cannot run on it side by side")
    hold = 1.0

    def probe(node):
        if not shareable(node.name):
            return None, []
        one = isolation.step_facts_command(gres_files[node.name], hold)
        args = f"{place_on(node)} -n1 --gres=gpu:1"
        r = controller.run(isolation.side_by_side([args, args], one), timeout=thresholds.job_start_s_max + hold)
        return r, [f for out in isolation.split_side_by_side(r.stdout, 2) for f in isolation.parse_step_facts(out)]

    r, facts = each_node(probe)
    assert len(facts) == 2, f"two 1-GPU jobs on {gpu_node.name} did not both run: {r.stdout.strip()[-400:]}"
    a, b = facts
    assert isolation.overlapped(a, b), (
        f"the two 1-GPU jobs on {gpu_node.name} ran one after the other, not side by side"
    )
    assert a.step_gpus and b.step_gpus and not set(a.step_gpus) & set(b.step_gpus), (
        f"two concurrent 1-GPU jobs on {gpu_node.name} got GPUs {a.step_gpus} and {b.step_gpus}"
    )
    if a.opened and b.opened:
        assert not set(a.opened) & set(b.opened), (
            f"two concurrent 1-GPU jobs on {gpu_node.name} can both open {sorted(set(a.opened) & set(b.opened))}"
        )
