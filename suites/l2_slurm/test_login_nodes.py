"""Layer 2, login nodes: users submit from them, not from the controller. A job started with
``srun`` on a login node needs every compute node to connect back to that srun (its tasks'
output, input and PMI wire-up), on a port in SrunPortRange or, without one, any port: a
firewall on the login node that lets only SSH in leaves every interactive job and every
srun-launched MPI job hanging, while the same job from the controller runs. (Munge, the
clock and slurm.conf of login nodes are checked with the compute nodes'.)"""

from __future__ import annotations

from pytest_hpcvalidate.hostlist import fold
from pytest_hpcvalidate.probes import network, slurm

from ..conftest import partition_node_names

#: how long the listener waits for every compute node to connect, s
CONNECT_WAIT_S = 10.0


def test_compute_nodes_can_connect_back_to_srun_on_the_login_node(login_node, cluster, slurm_config):
    """Every compute node opens a TCP connection to the login node on a port srun could be
    listening on: in SrunPortRange where slurm.conf sets one, else in the login node's
    ephemeral port range."""
    configured = slurm.srun_port_range(slurm_config)
    lo, hi = configured or network.ephemeral_ports(login_node)
    where = f"SrunPortRange={lo}-{hi}" if configured else f"no SrunPortRange: srun listens on any port ({lo}-{hi})"
    port, why = network.free_port(login_node, lo, hi)
    assert port is not None, f"{login_node.name}: cannot listen on a port in {lo}-{hi} ({where}): {why}"
    back = network.connect_back(cluster, login_node, cluster.compute, port, wait_s=CONNECT_WAIT_S)
    assert not back.listener_error, (
        f"{login_node.name}: could not listen on port {port} (its python3 runs the listener): {back.listener_error}")
    failed = {name: err for name, err in back.errors.items() if err}
    assert not failed, (
        f"{fold(failed)} cannot connect to srun's port {port} on login node {login_node.name} ({where}): "
        + "; ".join(f"{name}: {err}" for name, err in failed.items())
        + f". Jobs started with srun on {login_node.name} hang or fail there while the same job from the controller "
        f"runs: open {lo}-{hi}/tcp on {login_node.name} to the compute nodes"
        + ("" if configured else ", or set SrunPortRange in slurm.conf and open that range"))


def test_jobs_submitted_from_the_login_node_run(login_node, cluster, hpc_config, node_spec, thresholds):
    """From the login node, as users submit: a two-node ``srun`` (one task per node, wired up
    across nodes) in the largest partition prints each node's name, and ``sbatch`` runs a job
    to COMPLETED. (Every compute node's path back to the login node is the check above; every
    node of every partition runs a step from the controller.)"""
    part, names = max(partition_node_names(hpc_config, node_spec), key=lambda pn: len(pn[1]))
    count = min(2, len(names))
    r = slurm.srun(login_node, f"-p {part} -N{count} --ntasks-per-node=1", "hostname",
                   timeout=thresholds.job_start_s_max)
    ran = r.stdout.split()
    assert r.ok and len(set(ran)) == count and set(ran) <= set(names), (
        f"srun -p {part} -N{count} from login node {login_node.name} "
        + (f"ran on {fold(ran) or 'no node'}, expected {count} of {fold(names)}" if r.ok else "failed")
        + f": {r.describe()}")
    run = slurm.batch_run(login_node, cluster.shared_dir, "login", f"-p {part} -N1", 'echo "hpcv-login $SLURM_JOB_ID"',
                          timeout=thresholds.job_start_s_max)
    assert run.job_id is not None, f"sbatch from login node {login_node.name} failed: {run.submitted.describe()}"
    info = run.info
    assert info is not None and info.state == "COMPLETED", (
        f"batch job {run.job_id} submitted from login node {login_node.name} ended "
        f"{info.state if info else 'unseen'} (exit {info.exit_code if info else '?'}, nodes "
        f"{info.nodes if info else '?'})")
