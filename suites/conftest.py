"""Fixtures the layered suites share (beyond the plugin's cluster/node fixtures)."""

from __future__ import annotations

import dataclasses
import shlex

import pytest

from pytest_hpcvalidate.hostlist import expand
from pytest_hpcvalidate.probes import gpu, slurm, users
from pytest_hpcvalidate.probes.jobwatch import JobWatch


@pytest.fixture(scope="module")
def slurm_nodes(controller) -> dict[str, slurm.SlurmNode]:
    """Every node as slurmctld has it, read once per module."""
    return slurm.show_nodes(controller)


@pytest.fixture(scope="module")
def slurm_config(controller) -> dict[str, str]:
    """The running Slurm configuration (``scontrol show config``), read once per module."""
    return slurm.show_config(controller)


@pytest.fixture(scope="module")
def slurm_partitions(controller) -> dict[str, slurm.SlurmPartition]:
    """Every partition as slurmctld has it, read once per module."""
    return slurm.show_partitions(controller)


@pytest.fixture(scope="module")
def job_cpus(slurm_nodes, slurm_partitions, node_spec, cluster, partition_of):
    """``job_cpus(node_name, partition=None)``: the CPUs a job may be given on that node: Slurm's
    CPUEfctv, its CPUs less the cores ``CoreSpecCount``/``CpuSpecList`` keep for the system, and
    at most the partition's ``MaxCPUsPerNode`` (a CPU partition over GPU nodes often leaves their
    other cores to GPU jobs) — a job asking for more is refused as never satisfiable. The
    partition: ``partition``, else the one :func:`partition_of` gives; the config's cpus where
    Slurm does not know the node."""
    def cpus(name: str, partition: str | None = None) -> int:
        sn = slurm_nodes.get(name)
        have = sn.job_cpus if sn else node_spec[name].cpus
        part = slurm_partitions.get(partition or partition_of(cluster.node(name)) or "")
        limit = part.max_cpus_per_node if part else None
        return min(have, limit) if limit else have

    return cpus


@pytest.fixture(scope="module")
def cpus_granted(slurm_nodes, slurm_config):
    """``cpus_granted(node_name, k)``: how many CPUs Slurm gives a task of ``-c k`` on that node
    (``slurm.cpus_granted``: whole cores of its layout where a core has several threads)."""
    select = slurm_config.get("SelectTypeParameters", "")

    def granted(name: str, k: int) -> int:
        sn = slurm_nodes.get(name)
        return slurm.cpus_granted(k, slurm.declared_topology(sn) if sn else None, select)

    return granted


@pytest.fixture(scope="session")
def gres_devices(cluster) -> dict[str, slurm.GresDevices]:
    """{node: the GPU device files its slurmd uses, and where they were read}: gres.conf's
    ``File=`` lines, else what ``slurmd -G`` detects (``AutoDetect=nvml``); every compute node
    at once. A node whose reading failed has no files and says why."""
    outcomes = cluster.map(slurm.gres_devices, cluster.compute)
    return {name: o.value if o.error is None else slurm.GresDevices(name, (), f"reading failed: {o.error}")
            for name, o in outcomes.items()}


@pytest.fixture(scope="session")
def gres_files(gres_devices) -> dict[str, list[str]]:
    """{node: [device files Slurm gives it for gpu]} (see ``gres_devices``)."""
    return {name: list(d.files) for name, d in gres_devices.items()}


@pytest.fixture
def gpu_device_files(gpu_node, gres_devices) -> list[str]:
    """This GPU node's device files as Slurm knows them; the check cannot run without them
    (a device-isolation check over no device would pass on any node), so it fails here."""
    d = gres_devices[gpu_node.name]
    if not d.files:
        pytest.fail(f"{gpu_node.name}: Slurm names no GPU device file for the node (read from {d.source}); "
                    "fix: File= lines in gres.conf, or AutoDetect=nvml with NVML working on the node",
                    pytrace=False)
    return list(d.files)


@pytest.fixture(scope="session")
def partition_of(hpc_config):
    """``partition_of(node, dedicated=False)`` → a configured partition that contains ``node``
    (the default partition when it does), or None; ``dedicated``: only among those whose jobs
    do not share CPUs on purpose (``oversubscribe``)."""
    parts = sorted(hpc_config.slurm.partitions, key=lambda p: not p.default)

    def choose(node, dedicated: bool = False) -> str | None:
        return next((p.name for p in parts if (p.nodes == "ALL" or node.name in expand(p.nodes))
                     and not (dedicated and p.oversubscribe)), None)

    return choose


@pytest.fixture(scope="session")
def place_on(partition_of):
    """``place_on(node)`` → srun/sbatch options for a one-node job on ``node``, in the
    partition :func:`partition_of` gives."""
    def options(node) -> str:
        part = partition_of(node)
        return (f"-p {part} " if part else "") + f"-w {node.name} -N1"

    return options


@pytest.fixture(scope="session")
def real_gpu_nodes(cluster, node_spec):
    """The nodes the config gives real (not simulated) GPUs."""
    return [cluster.node(name) for name, spec in node_spec.items() if spec.gpus and not spec.gpu_simulated]


@pytest.fixture(scope="session")
def gpu_facts(cluster, real_gpu_nodes, node_spec):
    """{node: NodeGpuFacts}, read through NVML (the node's ``gpus.python``) on every real-GPU
    node at once; the L1 health checks and the L4 CUDA checks judge the same reading."""
    return gpu.gather_facts(cluster, real_gpu_nodes, pythons={n.name: node_spec[n.name].gpu_python for n in real_gpu_nodes})


#: the check that needs a job past its time limit (layer 2, ``l2_slurm/test_time_limits.py``).
#: Its job starts with the run's first test, so that the wait for slurmctld's time-limit pass
#: (every 30 s) is over by the time the check runs, and the job is running, not queued, when
#: layer 2's own jobs are submitted (a pending job ahead of them would delay them to the
#: scheduler's next pass)
TIME_LIMIT_CHECK = "test_a_job_past_its_time_limit_is_stopped"

#: the job shortens its own time limit to a few seconds from now (a user may shorten, never
#: lengthen, a job of theirs; the shortest limit sbatch takes is a minute) and then outlives it.
#: slurmctld refuses an end before its own clock (``end_time < now`` in 22.05 and 24.11), and
#: scontrol reads "now" off the compute node's clock: the end is 10 s ahead, 10 s more on each
#: refusal (a node's clock behind the controller's). 97: refused 5 times; the job's Comment says why
OVER_TIME_SCRIPT = """\
tries=0
until why=$(scontrol update JobId="$SLURM_JOB_ID" EndTime=now+$((10 + 10 * tries)) 2>&1); do
  tries=$((tries + 1))
  if [ "$tries" -ge 5 ]; then
    scontrol update JobId="$SLURM_JOB_ID" \\
      Comment="$(printf '%s' "EndTime now+10..50 s on $(hostname) at $(date +%FT%T) refused: $why" | tr '=\\n' ': ')"
    exit 97
  fi
  sleep 1
done
exec sleep 600"""
NO_SCONTROL_EXIT = "97:0"


class OverTimeJob:
    """The job that outlives its time limit: submitted once, by :meth:`submit` (ahead, at the
    run's first test) or else by the check's own :meth:`get`; cancelled by :meth:`cancel`.
    From its submission a :class:`JobWatch` reads its record until it ends: the check may
    come to it after slurmctld has forgotten it (``MinJobAge`` after its end), when the
    checks before it take long (a large cluster's L1, a slow burst)."""

    POLL_S = 2.0

    def __init__(self, controller):
        self.controller, self.submitted, self.watch = controller, None, None

    def submit(self) -> None:
        if self.submitted is None:
            self.submitted = slurm.sbatch(self.controller, "-N1 -n1 --mem=32M --time=2 -o /dev/null -e /dev/null",
                                          OVER_TIME_SCRIPT)
            if self.submitted[0] is not None:
                self.watch = JobWatch(self.controller, self.submitted[0], self.POLL_S)

    def get(self):
        """(job id or None, sbatch's result)."""
        self.submit()
        return self.submitted

    def cancel(self) -> None:
        if self.watch is not None:
            self.watch.stop()
        if self.submitted is not None and self.submitted[0] is not None:
            self.controller.run(f"scancel {self.submitted[0]}", timeout=30)


@pytest.fixture(scope="session", autouse=True)
def job_past_its_time_limit(request):
    """The :class:`OverTimeJob` of the time-limit check (None when it is not selected). Submitted
    at the run's first test; under pytest-xdist by the check itself, since every worker sees
    every selected test and ahead each would submit its own. Cancelled at the end of the run,
    whatever became of it."""
    if not any(getattr(item, "originalname", item.name) == TIME_LIMIT_CHECK for item in request.session.items):
        yield None
        return
    job = OverTimeJob(request.getfixturevalue("controller"))
    if not hasattr(request.config, "workerinput"):
        job.submit()
    yield job
    job.cancel()


def partition_node_names(hpc_config, node_spec) -> list[tuple[str, list[str]]]:
    """(partition, its compute node names, sorted) for every configured partition: one job
    per partition reaches every compute node."""
    compute = sorted(n.name for n in node_spec.values() if n.role == "compute")
    return [(p.name, compute if p.nodes == "ALL" else sorted(expand(p.nodes))) for p in hpc_config.slurm.partitions]


def srun_as(controller, user: str, args: str, command: str, timeout: float):
    """``srun <args> --chdir=/tmp /bin/sh -c <command>`` submitted from the controller as
    ``user`` (:func:`users.as_user`); the running check is skipped, naming why, where the login
    user may not act as them."""
    job = f"srun {args} --chdir=/tmp /bin/sh -c {shlex.quote(command)}"
    r = controller.run(users.as_user(user, job), timeout=timeout)
    r = dataclasses.replace(r, command=f"{job}  (as {user})")  # reported as the check wrote it
    if users.sudo_refused(r):
        pytest.skip(f"cannot submit a job as {user} from {controller.name}: the login user is not root, and "
                    f"sudo -n -u {user} is refused ({r.stderr.strip()[:200]})")
    return r
