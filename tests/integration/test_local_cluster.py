"""The local provider's engine, for real: a Slurm cluster in namespaces on this machine.

Nothing is mocked. The cluster tests need root and the Debian packages of the local
provider; without them they skip, naming what is missing. The config-rendering tests at the
bottom need neither.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict, replace
from pathlib import Path

import clusterkit
import pytest

import pytest_hpcvalidate
from pytest_hpcvalidate.providers.base import ProvisioningError
from pytest_hpcvalidate.providers.local import slurmconf, sshconf
from pytest_hpcvalidate.providers.local.cleanup import cleanup_stale, leftovers
from pytest_hpcvalidate.providers.local.spec import LocalSpec, NodeSpec, PartitionSpec

STATE_ROOT = Path("/var/lib/hpcvalidate/clusters")
SRC = Path(pytest_hpcvalidate.__file__).resolve().parents[1]


_skip_reason = clusterkit.skip_reason
needs_local = clusterkit.needs_local
pytestmark = pytest.mark.integration


def make_spec(name: str, third_octet: int, computes: int = 2, gpus_on_first: int = 2, cpus: int = 2,
              memory_mb: int = 1024) -> LocalSpec:
    """1 controller + ``computes`` compute nodes; the first compute node has simulated GPUs."""
    base = f"10.234.{third_octet}"
    nodes = [NodeSpec("ctl", "controller", f"{base}.10", cpus=1, memory_mb=512)]
    for i in range(1, computes + 1):
        nodes.append(NodeSpec(f"c{i}", "compute", f"{base}.{10 + i}", cpus=cpus, memory_mb=memory_mb,
                              gpus=gpus_on_first if i == 1 else 0, gpu_type="sim"))
    work_dir = STATE_ROOT / name
    return LocalSpec(
        cluster=name, subnet=f"{base}.0/24", bridge=f"hpcv-{name}"[:15], bridge_address=f"{base}.1", mtu=1500,
        nodes=nodes,
        partitions=[PartitionSpec("debug", [n.name for n in nodes if n.role == "compute"], True, "1:00:00")],
        work_dir=work_dir, shared_dir=work_dir / "shared",
    )


#: clusters a single test made; the autouse fixture below removes them even when the test fails
_MADE: list[str] = []


def _unique(tag: str) -> tuple[str, int]:
    name, octet = clusterkit.unique(tag)
    if tag != "m":
        _MADE.append(name)
    return name, octet


@pytest.fixture(autouse=True)
def _nothing_left_behind():
    yield
    while _MADE:
        clusterkit.remove(_MADE.pop())


def _pgrep_cluster(spec: LocalSpec) -> list[str]:
    """Processes whose command line names the cluster's work directory (its daemons do)."""
    proc = subprocess.run(["pgrep", "-a", "-f", str(spec.work_dir) + "/"], capture_output=True, text=True)
    return [line for line in proc.stdout.splitlines() if "pgrep" not in line]


@pytest.fixture(scope="module")
def local(request):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from pytest_hpcvalidate.providers.local.engine import LocalCluster

    name, octet = _unique("m")
    spec = make_spec(name, octet)
    engine = LocalCluster(spec)
    steps: list[tuple[str, str, str]] = []
    cluster = engine.up(lambda step, node="", detail="": steps.append((step, node, detail)))
    yield engine, cluster, steps
    engine.down()
    left = leftovers(spec.cluster)
    assert left == [], f"down() left: {left}"


def _ctl(cluster):
    return cluster.controller


# -- the running cluster -------------------------------------------------------------------------

@needs_local
def test_compute_nodes_idle_with_configured_resources(local):
    engine, cluster, _ = local
    out = _ctl(cluster).run("sinfo -h -N -o '%N %T'").check().stdout
    states = dict(line.split() for line in out.splitlines())
    assert states == {"c1": "idle", "c2": "idle"}, out
    nodes = {}
    for line in _ctl(cluster).run("scontrol show node -o").check().stdout.splitlines():
        fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        nodes[fields["NodeName"]] = fields
    for spec_node in engine.spec.compute:
        got = nodes[spec_node.name]
        assert int(got["CPUTot"]) == spec_node.cpus, got
        assert int(got["RealMemory"]) == spec_node.memory_mb, got
        assert got["NodeAddr"] == spec_node.address, got
    assert nodes["c1"]["Gres"] == "gpu:sim:2"
    assert nodes["c2"]["Gres"] == "(null)"


@needs_local
def test_progress_reports_each_step(local):
    _, _, steps = local
    names = [s for s, _, _ in steps]
    for want in ("preflight", "network", "cgroups", "namespaces", "daemons", "ready"):
        assert want in names, names
    assert {n for s, n, _ in steps if s == "namespaces" and n} == {"ctl", "c1", "c2"}


@needs_local
def test_srun_spans_both_nodes(local):
    _, cluster, _ = local
    out = _ctl(cluster).run("srun -N2 hostname", timeout=30).check().stdout.split()
    assert sorted(out) == ["c1", "c2"]


@needs_local
def test_gres_sets_cuda_visible_devices(local):
    _, cluster, _ = local
    out = _ctl(cluster).run("srun -w c1 --gres=gpu:1 env", timeout=30).check().stdout
    assert "CUDA_VISIBLE_DEVICES=0" in out.splitlines()


@needs_local
def test_devices_cgroup_isolates_simulated_gpus(local):
    """Without GRES the device is denied (EPERM); with it the open reaches the (absent) driver (ENXIO)."""
    _, cluster, _ = local
    denied = _ctl(cluster).run("srun -w c1 cat /dev/nvidia1", timeout=30)
    assert denied.exit_code != 0 and "Operation not permitted" in denied.stderr, denied.describe()
    allowed = _ctl(cluster).run("srun -w c1 --gres=gpu:2 cat /dev/nvidia1", timeout=30)
    assert "No such device or address" in allowed.stderr, allowed.describe()


@needs_local
def test_cpu_constraint(local):
    _, cluster, _ = local
    assert _ctl(cluster).run("srun -c1 nproc", timeout=30).check().stdout.strip() == "1"
    assert _ctl(cluster).run("srun -w c2 -c2 nproc", timeout=30).check().stdout.strip() == "2"


@needs_local
@pytest.mark.skipif(shutil.which("mpicc") is None, reason="needs mpicc (apt-get install libopenmpi-dev)")
def test_mpi_allreduce_across_nodes_with_pmix(local):
    _, cluster, _ = local
    src = cluster.shared_dir / "allreduce.c"
    binary = cluster.shared_dir / "allreduce"
    src.write_text(textwrap.dedent("""\
        #include <mpi.h>
        #include <stdio.h>
        #include <unistd.h>
        int main(int argc, char **argv) {
            int rank, size, sum, mine;
            char host[64];
            MPI_Init(&argc, &argv);
            MPI_Comm_rank(MPI_COMM_WORLD, &rank);
            MPI_Comm_size(MPI_COMM_WORLD, &size);
            gethostname(host, sizeof host);
            mine = rank + 1;
            MPI_Allreduce(&mine, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
            printf("rank=%d size=%d host=%s sum=%d\\n", rank, size, host, sum);
            MPI_Finalize();
            return 0;
        }
        """))
    subprocess.run(["mpicc", "-o", str(binary), str(src)], check=True, capture_output=True)
    res = _ctl(cluster).run(f"cd {cluster.shared_dir} && srun -N2 -n2 --mpi=pmix ./allreduce", timeout=60).check()
    lines = sorted(res.stdout.split("\n"))
    ranks = [dict(kv.split("=") for kv in line.split()) for line in lines if line.startswith("rank=")]
    assert len(ranks) == 2, res.stdout
    assert {r["host"] for r in ranks} == {"c1", "c2"}
    assert all(r["size"] == "2" and r["sum"] == "3" for r in ranks), res.stdout


@needs_local
def test_ssh_reaches_every_node_with_strict_host_keys(local):
    _, cluster, _ = local
    for node in cluster.nodes:
        assert node.ssh is not None
        assert node.ssh.run("hostname", timeout=30).check().stdout.strip() == node.name
    # an SSH session is inside the node: the cluster's Slurm config and munge socket are there
    assert _ctl(cluster).ssh.run("srun -N2 hostname", timeout=30).check().stdout.split().count("c1") == 1


@needs_local
def test_munge_credential_from_compute_decodes_on_controller(local):
    _, cluster, _ = local
    cred = cluster.node("c1").run("munge -n").check().stdout.strip()
    assert re.fullmatch(r"MUNGE:[A-Za-z0-9+/=:]+", cred), cred
    out = _ctl(cluster).run(f"printf %s '{cred}' | unmunge").check().stdout
    assert "STATUS:          Success (0)" in out
    assert re.search(r"ENCODE_HOST:\s+c1 ", out), out


@needs_local
def test_each_node_has_its_own_munged_and_key(local):
    engine, cluster, _ = local
    for node in cluster.nodes:
        key = engine.node_paths(node.name).munge_key
        assert key.stat().st_mode & 0o777 == 0o400
        sock = node.run("ls /run/munge/").check().stdout
        assert "munge.socket.2" in sock


@needs_local
def test_nodes_see_cluster_hosts_and_shared_dir_but_private_tmp(local):
    _, cluster, _ = local
    marker = cluster.shared_dir / "from-host"
    marker.write_text("shared\n")
    results = cluster.run_all(f"getent hosts c2 && cat {marker} && touch /tmp/mine && ls /tmp")
    for res in results.values():
        res.check()
        assert "c2" in res.stdout and "shared" in res.stdout
        assert "mine" in res.stdout
    assert not Path("/tmp/mine").exists(), "a node's /tmp must be private"
    assert "c2" not in Path("/etc/hosts").read_text().split(), "the host's /etc/hosts must be untouched"


@needs_local
def test_attach_binds_again_what_the_host_detached_from_a_node(local):
    """The host replacing /etc/hosts (or passwd, by useradd) detaches the node's bind over it;
    attaching (--hpc-reuse, xdist workers) binds it again and says so. Detached here from inside
    c2, which leaves c2 where the host's rename would: seeing the host's file."""
    from pytest_hpcvalidate.providers.local.engine import LocalCluster

    engine, cluster, _ = local
    pid = cluster.node("c2").facts["anchor_pid"]
    subprocess.run(["nsenter", "-t", str(pid), "-m", "--", "umount", "/etc/hosts"], check=True)
    assert not cluster.node("c2").run("getent hosts c1").ok, "c2 should see the host's /etc/hosts now"
    attached = LocalCluster(engine.spec).attach()
    assert len(attached.notes) == 1 and attached.notes[0].endswith(": c2 /etc/hosts"), attached.notes
    assert cluster.node("c2").run("getent hosts c1").check().stdout.split()[0] == engine.spec.nodes[1].address
    assert LocalCluster(engine.spec).attach().notes == []
    # another file bound over the node's on purpose (a fault, an operator) is not a detached bind
    other = engine.work_dir / "hosts-of-a-fault"
    other.write_text("127.0.0.1 localhost\n")
    subprocess.run(["nsenter", "-t", str(pid), "-m", "--", "mount", "--bind", str(other), "/etc/hosts"], check=True)
    try:
        assert LocalCluster(engine.spec).attach().notes == []
        assert not cluster.node("c2").run("getent hosts c1").ok
    finally:
        subprocess.run(["nsenter", "-t", str(pid), "-m", "--", "umount", "/etc/hosts"], check=True)
    assert cluster.node("c2").run("getent hosts c1").ok


@needs_local
def test_a_node_with_another_munge_key_is_rejected_then_restored(local):
    """The fault injector's path: swap one node's key, restart its munged, credentials fail."""
    engine, cluster, _ = local
    key = engine.node_paths("c2").munge_key
    good = key.read_bytes()
    try:
        engine.stop_daemon("c2", "munged")
        key.chmod(0o600)
        key.write_bytes(os.urandom(len(good)))
        key.chmod(0o400)
        engine.start_daemon("c2", "munged")
        deadline = time.monotonic() + 5
        while not cluster.node("c2").run("munge -n >/dev/null").ok and time.monotonic() < deadline:
            time.sleep(0.02)
        cred = cluster.node("c2").run("munge -n").check().stdout.strip()
        out = _ctl(cluster).run(f"printf %s '{cred}' | unmunge")
        assert out.exit_code != 0 and "Invalid credential" in (out.stdout + out.stderr), out.describe()
    finally:
        engine.stop_daemon("c2", "munged")
        key.chmod(0o600)
        key.write_bytes(good)
        key.chmod(0o400)
        engine.start_daemon("c2", "munged")
    deadline = time.monotonic() + 5
    while not cluster.node("c2").run("munge -n >/dev/null").ok and time.monotonic() < deadline:
        time.sleep(0.02)
    cred = cluster.node("c2").run("munge -n").check().stdout.strip()
    assert _ctl(cluster).run(f"printf %s '{cred}' | unmunge").ok
    assert len(engine.daemon_pids("c2", "munged")) == 1


@needs_local
def test_memory_limit_is_enforced(local):
    _, cluster, _ = local
    res = _ctl(cluster).run("srun -w c2 --mem=50M python3 -c 'x = bytearray(300 * 1024 * 1024)'", timeout=60)
    assert res.exit_code != 0
    assert "Out Of Memory" in res.stderr or "oom" in res.stderr.lower(), res.describe()


# -- lifecycle ---------------------------------------------------------------------------------

@needs_local
def test_two_clusters_side_by_side_then_nothing_left():
    from pytest_hpcvalidate.providers.local.engine import LocalCluster

    specs = []
    for tag in ("a", "b"):
        name, octet = _unique(tag)
        specs.append(make_spec(name, octet, computes=1, gpus_on_first=0))
    engines = [LocalCluster(s) for s in specs]
    try:
        clusters = [e.up() for e in engines]
        for c in clusters:
            assert c.controller.run("srun -N1 hostname", timeout=30).check().stdout.strip() == "c1"
            assert c.controller.run("scontrol show config | grep ClusterName").check().stdout.split()[-1] == c.name
    finally:
        for e in engines:
            e.down()
    for s in specs:
        assert leftovers(s.cluster) == []
        assert _pgrep_cluster(s) == []
        spaces = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
        assert not any(n.startswith(f"hpcv-{s.cluster}-") for n in spaces)
        assert subprocess.run(["ip", "link", "show", s.bridge], capture_output=True).returncode != 0
    engines[0].down()  # idempotent


@needs_local
def test_down_removes_everything_even_with_a_job_running():
    from pytest_hpcvalidate.providers.local.engine import LocalCluster

    name, octet = _unique("d")
    spec = make_spec(name, octet, computes=2, gpus_on_first=1)
    engine = LocalCluster(spec)
    try:
        cluster = engine.up()
        # a job step running on both nodes while we tear down
        subprocess.Popen(["nsenter", "-t", str(cluster.controller.facts["anchor_pid"]), "-n", "-m", "-u", "--",
                          "srun", "-N2", "sleep", "300"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
        deadline = time.monotonic() + 20
        running = {}
        while len(running) < 2 and time.monotonic() < deadline:
            for node in cluster.compute:  # scontrol listpids: "PID JOBID STEPID ..." once the step runs
                out = node.run("scontrol listpids").stdout
                if re.search(r"^\d+\s+\d+\s+0\s", out, re.M):
                    running[node.name] = out
            time.sleep(0.05)
        assert sorted(running) == ["c1", "c2"], f"the job step should run on both nodes: {running}"
        # a process that entered only a node's mount namespace (not its network namespace
        # nor its cgroups) is still the cluster's: its /etc/hosts names the cluster
        stray = subprocess.Popen(["nsenter", "-t", str(cluster.node("c1").facts["anchor_pid"]), "-m", "--",
                                  "sleep", "300"], start_new_session=True)
        assert leftovers(spec.cluster) != [], "leftovers() must see a running cluster"
    finally:
        start = time.monotonic()
        engine.down()
        took = time.monotonic() - start
    stray.wait(timeout=5)  # ended (teardown may have reaped it already: then the code reads 0)
    assert leftovers(spec.cluster) == []
    assert _pgrep_cluster(spec) == []
    assert took < 10, f"teardown took {took:.1f}s"


@needs_local
def test_running_cluster_is_not_clobbered_by_a_second_up():
    from pytest_hpcvalidate.providers.local.engine import LocalCluster

    name, octet = _unique("k")
    spec = make_spec(name, octet, computes=1, gpus_on_first=0)
    first = LocalCluster(spec)
    try:
        first.up()
        with pytest.raises(ProvisioningError, match="in use by process|still running"):
            LocalCluster(spec).up()
        # the refused second attempt must not have torn the first one down
        assert first.cluster.controller.run("sinfo -h -N -o '%N %T'").check().stdout.split() == ["c1", "idle"]
        attached = LocalCluster(spec).attach()
        assert attached.node("c1").run("hostname").check().stdout.strip() == "c1"
    finally:
        first.down()
    assert leftovers(spec.cluster) == []


@needs_local
def test_subnet_collision_is_refused_with_the_fix():
    from pytest_hpcvalidate.providers.local.engine import LocalCluster

    routes = json.loads(subprocess.run(["ip", "-j", "-4", "route"], capture_output=True, text=True).stdout or "[]")
    foreign = next((r for r in routes if r.get("dst", "default") != "default" and "/" in r["dst"]
                    and not r.get("dev", "").startswith("hpcv")), None)
    if foreign is None:
        pytest.skip("the host has no non-default IPv4 route to collide with")
    import ipaddress

    net = ipaddress.ip_network(foreign["dst"])
    hosts = list(net.hosts())[:4] if net.num_addresses >= 8 else None
    if not hosts or net.prefixlen > 29:
        pytest.skip(f"route {foreign['dst']} is too small to build a test subnet in")
    name, _ = _unique("s")
    nodes = [NodeSpec("ctl", "controller", str(hosts[1])), NodeSpec("c1", "compute", str(hosts[2]))]
    spec = LocalSpec(cluster=name, subnet=str(net), bridge=f"hpcv-{name}"[:15], bridge_address=str(hosts[0]), mtu=1500,
                     nodes=nodes, partitions=[PartitionSpec("debug", ["c1"], True)],
                     work_dir=STATE_ROOT / name, shared_dir=STATE_ROOT / name / "shared")
    with pytest.raises(ProvisioningError, match="collides with route"):
        LocalCluster(spec).up()
    assert leftovers(name) == []


@needs_local
def test_missing_programs_name_their_debian_packages(monkeypatch):
    from pytest_hpcvalidate.providers.local.engine import LocalCluster

    name, octet = _unique("p")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # as for a user whose PATH lacks the sbin directories
    with pytest.raises(ProvisioningError) as err:
        LocalCluster(make_spec(name, octet, computes=1, gpus_on_first=0)).up()
    msg = str(err.value)
    assert "apt-get install -y" in msg
    for pkg in ("slurmctld", "slurmd", "munge"):
        assert re.search(rf"\b{pkg}\b", msg), msg
    assert leftovers(name) == []


@needs_local
def test_foreign_bridge_name_is_refused():
    from pytest_hpcvalidate.providers.local.engine import LocalCluster

    name, octet = _unique("f")
    spec = replace(make_spec(name, octet, computes=1, gpus_on_first=0), bridge="lo")
    with pytest.raises(ProvisioningError, match="already exists and is not this cluster's"):
        LocalCluster(spec).up()
    assert leftovers(name) == []


# -- interrupted provisioning ------------------------------------------------------------------

CHILD = """
import json, os, sys
from pathlib import Path
from pytest_hpcvalidate.providers.local.spec import LocalSpec, NodeSpec, PartitionSpec
from pytest_hpcvalidate.providers.local.engine import LocalCluster
d = json.loads(os.environ["HPCV_TEST_SPEC"])
d["nodes"] = [NodeSpec(**n) for n in d["nodes"]]
d["partitions"] = [PartitionSpec(**p) for p in d["partitions"]]
d["work_dir"], d["shared_dir"] = Path(d["work_dir"]), Path(d["shared_dir"])
def progress(step, node="", detail=""):
    print("STEP", step, node, flush=True)
LocalCluster(LocalSpec(**d)).up(progress)
print("STEP up", flush=True)
sys.stdin.read()
"""


def _spec_json(spec: LocalSpec) -> str:
    d = asdict(spec)
    d["work_dir"], d["shared_dir"] = str(spec.work_dir), str(spec.shared_dir)
    return json.dumps(d)


def _interrupt(spec: LocalSpec, sig: int, at_step: str | None, after_s: float | None) -> tuple[int, list[str]]:
    # the spec travels in the environment: a command line naming the work directory would
    # make leftovers() count the provisioning process itself as one of the cluster's
    env = dict(os.environ, PYTHONPATH=str(SRC), HPCV_TEST_SPEC=_spec_json(spec))
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen = []
    try:
        if at_step is not None:
            assert child.stdout is not None
            for line in child.stdout:
                seen.append(line.strip())
                if line.startswith(f"STEP {at_step}"):
                    break
        else:
            time.sleep(after_s or 0)
        child.send_signal(sig)
        child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return child.returncode, seen


@needs_local
@pytest.mark.parametrize("at_step", ["files", "network", "cgroups", "namespaces", "daemons", "waiting", "slurm"])
def test_ctrl_c_during_up_tears_down_what_was_made(at_step):
    name, octet = _unique("i")
    spec = make_spec(name, octet, computes=2, gpus_on_first=1)
    code, seen = _interrupt(spec, signal.SIGINT, at_step, None)
    assert code != 0, f"provisioning should have been interrupted (saw {seen})"
    # the engine itself removed what it made before the KeyboardInterrupt propagated
    assert leftovers(spec.cluster) == [], f"interrupted at {at_step}: engine left {leftovers(spec.cluster)}"
    assert cleanup_stale(cluster=spec.cluster) == []
    assert leftovers(spec.cluster) == []


@needs_local
@pytest.mark.parametrize("delay", ["0.2", "0.6", "1.2", "random"])
def test_ctrl_c_at_a_random_moment(delay):
    name, octet = _unique("r")
    spec = make_spec(name, octet, computes=2, gpus_on_first=1)
    seconds = random.uniform(0.1, 1.5) if delay == "random" else float(delay)
    _interrupt(spec, signal.SIGINT, None, seconds)
    # interrupted during up (engine cleaned) or after it (cluster left up): cleanup ends both
    assert cleanup_stale(cluster=spec.cluster) == []
    assert leftovers(spec.cluster) == []
    assert _pgrep_cluster(spec) == []


@needs_local
@pytest.mark.parametrize("at_step", ["network", "namespaces", "daemons", "waiting", "up"])
def test_crash_during_up_is_undone_by_cleanup_stale(at_step):
    """SIGKILL: no handler runs; the state file is all that is left to undo the run."""
    name, octet = _unique("x")
    spec = make_spec(name, octet, computes=2, gpus_on_first=1)
    code, seen = _interrupt(spec, signal.SIGKILL, at_step, None)
    assert code == -signal.SIGKILL
    assert (spec.work_dir / "state.json").exists(), f"a state file must survive the crash (saw {seen})"
    assert leftovers(spec.cluster) != []
    assert cleanup_stale(cluster=spec.cluster) == []
    assert leftovers(spec.cluster) == []
    assert _pgrep_cluster(spec) == []


@needs_local
def test_unrecorded_leftovers_are_swept_by_name():
    """A run killed before its first state write leaves resources only its names identify."""
    from pytest_hpcvalidate.providers.local.engine import LocalCluster
    from pytest_hpcvalidate.providers.local.naming import netns_name

    name, octet = _unique("o")
    spec = make_spec(name, octet, computes=1, gpus_on_first=0)
    orphan = netns_name(name, "ctl")
    subprocess.run(["ip", "netns", "add", orphan], check=True)
    assert leftovers(name) == [f"network namespace {orphan}"]
    engine = LocalCluster(spec)
    try:
        engine.up()
    finally:
        engine.down()
    assert leftovers(name) == []
    subprocess.run(["ip", "netns", "add", orphan], check=True)
    assert cleanup_stale(cluster=name) == []
    assert leftovers(name) == []


@needs_local
def test_cleanup_of_every_cluster_leaves_a_run_in_progress_alone():
    name, octet = _unique("u")
    root = Path("/var/lib/hpcvalidate/test-roots") / f"r{os.getpid()}"
    spec = replace(make_spec(name, octet, computes=1, gpus_on_first=0), work_dir=root / name,
                   shared_dir=root / name / "shared")
    env = dict(os.environ, PYTHONPATH=str(SRC), HPCV_TEST_SPEC=_spec_json(spec))
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("STEP up"):
                break
        problems = cleanup_stale(state_root=root)  # every cluster under root: the live one is skipped
        assert len(problems) == 1 and "in use by the run in process" in problems[0], problems
        assert f"network namespace hpcv-{name}-ctl" in leftovers(name, state_root=root)
        assert cleanup_stale(state_root=root, cluster=name) == []  # named explicitly: ended
        assert leftovers(name, state_root=root) == []
    finally:
        child.kill()
        child.wait()
        cleanup_stale(state_root=root, cluster=name)
        shutil.rmtree(root, ignore_errors=True)
        with contextlib.suppress(OSError):
            root.parent.rmdir()


@needs_local
def test_cleanup_command_line_removes_a_kept_cluster():
    name, octet = _unique("c")
    spec = make_spec(name, octet, computes=1, gpus_on_first=0)
    env = dict(os.environ, PYTHONPATH=str(SRC))
    code, _ = _interrupt(spec, signal.SIGKILL, "up", None)
    assert leftovers(spec.cluster) != []
    proc = subprocess.run([sys.executable, "-m", "pytest_hpcvalidate", "cleanup", "--cluster", spec.cluster],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert leftovers(spec.cluster) == []


# -- rendering (no root needed) ----------------------------------------------------------------

def test_slurm_conf_names_every_node_partition_and_plugin():
    spec = make_spec("render", 9, computes=2, gpus_on_first=2, cpus=4, memory_mb=2048)
    text = slurmconf.render_slurm_conf(spec)
    assert "ClusterName=render\n" in text
    assert "SlurmctldHost=ctl(10.234.9.10)\n" in text
    assert ("NodeName=c1 NodeAddr=10.234.9.11 NodeHostname=c1 CPUs=4 RealMemory=2048 Gres=gpu:sim:2 "
            "State=UNKNOWN") in text
    assert "NodeName=c2 NodeAddr=10.234.9.12 NodeHostname=c2 CPUs=4 RealMemory=2048 State=UNKNOWN" in text
    assert "NodeName=ctl" not in text  # the controller runs no slurmd
    assert "PartitionName=debug Nodes=c1,c2 Default=YES MaxTime=1:00:00 State=UP" in text
    for line in ("SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory", "ProctrackType=proctrack/cgroup",
                 "TaskPlugin=task/cgroup,task/affinity", "MpiDefault=pmix", "MpiParams=ports=12000-12999",
                 "GresTypes=gpu", "ReturnToService=2", "AuthType=auth/munge", "SchedulerType=sched/backfill"):
        assert line + "\n" in text
    assert f"SlurmdSpoolDir={spec.work_dir}/nodes/%n/spool\n" in text
    assert "DefMemPerCPU=512\n" in text
    featured = replace(spec, nodes=[replace(n, features=("gpu", "ib-hdr")) if n.name == "c1" else n for n in spec.nodes])
    assert "CPUs=4 RealMemory=2048 Gres=gpu:sim:2 Features=gpu,ib-hdr State=UNKNOWN\n" in slurmconf.render_slurm_conf(featured)


def test_slurm_conf_gives_the_machines_cpu_layout_to_nodes_of_all_its_threads_or_cores():
    """On two sockets of 8 cores with SMT (32 threads): a node given 32 CPUs or 16 (its cores)
    gets slurmd -C's layout; one given 4 keeps CPUs= alone (no layout of its own)."""
    from pytest_hpcvalidate.probes.slurm import Topology

    smt = Topology(cpus=32, boards=1, sockets=2, cores_per_socket=8, threads_per_core=2)
    spec = make_spec("render", 9, computes=3, cpus=4)
    spec = replace(spec, nodes=[replace(n, cpus={"c1": 32, "c2": 16}.get(n.name, n.cpus)) for n in spec.nodes])
    layouts = slurmconf.cpu_layouts(spec.compute, smt)
    assert layouts == {"c1": smt, "c2": smt}
    assert slurmconf.cpu_layouts(spec.compute, None) == {}
    text = slurmconf.render_slurm_conf(spec, layouts=layouts)
    assert "CPUs=32 Boards=1 SocketsPerBoard=2 CoresPerSocket=8 ThreadsPerCore=2 RealMemory=1024 " in text
    assert "CPUs=16 Boards=1 SocketsPerBoard=2 CoresPerSocket=8 ThreadsPerCore=2 RealMemory=1024 " in text
    assert "NodeHostname=c3 CPUs=4 RealMemory=1024 " in text


def test_gres_and_cgroup_conf():
    spec = make_spec("render", 9, computes=2, gpus_on_first=2)
    assert slurmconf.render_gres_conf(spec).splitlines()[1:] == ["NodeName=c1 Name=gpu Type=sim File=/dev/nvidia[0-1]"]
    one = replace(spec, nodes=[replace(n, gpus=1) if n.name == "c1" else n for n in spec.nodes])
    assert "File=/dev/nvidia0\n" in slurmconf.render_gres_conf(one)
    v1 = slurmconf.render_cgroup_conf(spec, "v1")
    assert "CgroupPlugin=cgroup/v1\n" in v1 and "CgroupMountpoint=/sys/fs/cgroup\n" in v1
    v2 = slurmconf.render_cgroup_conf(replace(spec, constrain_ram=False), "v2")
    assert "CgroupPlugin=cgroup/v2\n" in v2 and "ConstrainRAMSpace=no\n" in v2 and "ConstrainCores=yes\n" in v2


def test_known_hosts_and_hosts_list_every_node():
    spec = make_spec("render", 9)
    kh = sshconf.render_known_hosts(spec, "ssh-ed25519 AAAAC3Nza hpcv-render-host\n")
    assert kh.splitlines() == [f"{n.name},{n.address} ssh-ed25519 AAAAC3Nza" for n in spec.nodes]
    hosts = sshconf.render_hosts(spec)
    assert "10.234.9.11\tc1" in hosts.splitlines()


@needs_local
def test_thirty_two_nodes_reach_each_other_all_pairs():
    """1+32 nodes need ~1100 neighbour entries, past the kernel's default hard limit of 1024
    shared by every namespace: up() raises the limits (all pairs answer) and down() counts the
    cluster out again (seen failing before: 2 nodes reported 100% loss, ping never sent)."""
    from concurrent.futures import ThreadPoolExecutor

    from pytest_hpcvalidate.probes import network
    from pytest_hpcvalidate.providers.local import hostlimits
    from pytest_hpcvalidate.providers.local.engine import LocalCluster

    name, octet = _unique("w")
    spec = make_spec(name, octet, computes=32, gpus_on_first=0, cpus=1, memory_mb=256)
    engine = LocalCluster(spec)
    try:
        cluster = engine.up()
        addresses = {n.name: n.address for n in spec.nodes}

        def from_node(node):
            return node.name, network.ping_many(node, [a for n, a in addresses.items() if n != node.name],
                                                count=3, interval_s=0.05)

        with ThreadPoolExecutor(33) as pool:
            results = dict(pool.map(from_node, cluster.nodes))
        bad = [f"{src} -> {s.target}: {s.loss_pct:.0f}% {s.error}" for src, per in results.items()
               for s in per.values() if s.loss_pct > 0]
        assert sum(len(per) for per in results.values()) == 33 * 32
        assert bad == [], f"{len(bad)} of {33 * 32} pairs failed: {bad[:3]}"
        assert hostlimits.read_limits(hostlimits.SYSCTL_DIR)["gc_thresh3"] >= hostlimits.neighbours_needed(33)
    finally:
        engine.down()
    registry = json.loads(hostlimits.REGISTRY.read_text())
    assert str(spec.work_dir) not in registry["clusters"]
    if not registry["clusters"]:  # no other cluster on this host still counts on the raise
        assert hostlimits.read_limits(hostlimits.SYSCTL_DIR) == registry["original"]
    assert leftovers(spec.cluster) == []


def _with_monitoring(spec: LocalSpec) -> LocalSpec:
    """``spec`` with Prometheus, an exporter on every node and Alertmanager (the monitoring
    addon), as ``spec_from_config`` gives them."""
    from pytest_hpcvalidate.config.model import Alerting, Monitoring

    section = {**Monitoring(alerting=Alerting()).model_dump(mode="json"), "nodes": [n.name for n in spec.nodes],
               "prometheus_node": "ctl", "alertmanager_node": "ctl"}
    return replace(spec, extra={**spec.extra, "monitoring": section})


@needs_local
@pytest.mark.parametrize("at_step", ["monitoring", "addon"])
def test_ctrl_c_while_monitoring_starts_leaves_nothing(at_step):
    """Prometheus, Alertmanager and the exporters start before Slurm (``monitoring``) and are
    waited for after it (``addon``): Ctrl-C at either leaves none of them running."""
    name, octet = _unique("k")
    spec = _with_monitoring(make_spec(name, octet, computes=2, gpus_on_first=0))
    code, seen = _interrupt(spec, signal.SIGINT, at_step, None)
    assert code != 0 and any(line.startswith(f"STEP {at_step}") for line in seen), seen
    assert leftovers(spec.cluster) == [], f"interrupted at {at_step}: engine left {leftovers(spec.cluster)}"
    assert _pgrep_cluster(spec) == []
    ours = subprocess.run(["pgrep", "-a", "-f", f"web.listen-address=10.234.{octet}."], capture_output=True, text=True)
    assert [line for line in ours.stdout.splitlines() if "pgrep" not in line] == []
