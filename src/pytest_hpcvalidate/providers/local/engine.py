"""``LocalCluster(spec).up(progress) -> Cluster`` and ``.down()``: a real Slurm cluster in
Linux namespaces on this machine.

The order of ``up``, with per-node work done concurrently (processes are started for every
node at once, then waited for together; nothing sleeps, everything polls):

1. preflight (root, programs, /etc/slurm, bridge name, subnet, leftover state)
2. work directory and state file; keys (ssh-keygen runs in the background) and configs
3. network: bridge, namespaces, veth pairs (one ``ip -batch``)
4. cgroup subtrees, simulated GPU device nodes
5. one anchor per node (namespaces + mounts), waited for together
6. munged and sshd on every node; once munge answers, slurmctld and every slurmd
7. ready when every compute node is ``idle`` in ``sinfo`` and every sshd listens

Every resource is recorded in the state file before it is made. Any exception, Ctrl-C
included, tears down what was made before it propagates; ``down()`` and the ``cleanup``
command share one teardown (:mod:`.cleanup`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import selectors
import shutil
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path

from ..base import ProgressFn, ProvisioningError, no_progress
from . import accounts, addons, cgroups, daemons, hostlimits, keys, mountns, netns, preflight, procs, slurmconf, sshconf
from .cleanup import mounts_under, swept_state, teardown
from .daemons import Daemon
from .keys import SshPaths
from .mountns import NodePaths
from .naming import netns_name, veth_name
from .spec import LocalSpec, NodeSpec
from .state import STATE_FILE, State, same_process

#: major number of NVIDIA's character devices (no driver behind it here: opens give ENXIO)
GPU_MAJOR = 195
ANCHOR_TIMEOUT_S = 15.0
POLL_S = 0.02
SINFO_POLL_S = 0.025


@contextlib.contextmanager
def _signals_deferred():
    """Hold SIGINT/SIGTERM while tearing down after a failure (a second Ctrl-C must not
    interrupt the cleanup of the first); they are delivered right after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


#: (daemon, words in its log, hint): start failures of these machines' packages, with what to do
KNOWN_START_FAILURES = (
    ("slurmdbd", "_check_mysql_concat_is_sane",
     " -- a known incompatibility of Debian 13's slurmdbd 24.11.5 with Debian 13's libmariadb3 (11.8): "
     "its first query fails (README, \"Debian 13 and Slurm 24.11\"); set slurm.accounting: false in the config"),
)


def host_cpu_layout():
    """This machine's CPU layout as slurmd finds it (``slurmd -C``); None where it does not answer."""
    from ...probes.slurm import parse_hardware

    try:
        r = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30, env=daemons.DAEMON_ENV)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_hardware(r.stdout) if r.returncode == 0 else None


class LocalCluster:
    """One local cluster: its spec, what was made for it, and how to undo it."""

    def __init__(self, spec: LocalSpec):
        self.spec = spec
        self.work_dir = Path(spec.work_dir)
        self.state: State | None = None
        self.layout: str | None = None
        self.cluster = None
        self.anchors: dict[str, subprocess.Popen] = {}
        self.daemons: list[Daemon] = []
        self.timings: dict[str, float] = {}
        self.warnings: list[str] = []
        self._keygen: list[subprocess.Popen] = []
        self._cg: dict[str, cgroups.NodeCgroups] = {}
        self._t0 = 0.0

    # -- paths -----------------------------------------------------------------------------
    def node_paths(self, node: str) -> NodePaths:
        return NodePaths(self.work_dir / "nodes" / node)

    @property
    def ssh_paths(self) -> SshPaths:
        return SshPaths(self.work_dir / "ssh")

    @property
    def conf_dir(self) -> Path:
        return self.work_dir / "etc" / "slurm"

    @property
    def slurm_conf(self) -> Path:
        return self.conf_dir / "slurm.conf"

    # -- up ----------------------------------------------------------------------------------
    def up(self, progress: ProgressFn = no_progress):
        """Provision the cluster; returns a :class:`~pytest_hpcvalidate.cluster.Cluster`."""
        try:
            return self._up(progress)
        except BaseException as exc:
            with _signals_deferred():
                try:
                    progress("teardown", "", f"provisioning failed ({type(exc).__name__}); removing what was made")
                except Exception:
                    pass
                errors = self._teardown()
            if errors and isinstance(exc, ProvisioningError):
                exc.args = (f"{exc.args[0]} (and cleanup left: {'; '.join(errors)[:600]})",)
            raise

    def _mark(self, name: str) -> None:
        self.timings[name] = round(time.monotonic() - self._t0, 4)

    def _reserve_neighbours(self) -> None:
        """Raise the host's neighbour-table limits for this cluster's all-pairs traffic (the
        kernel has one table for every namespace; see hostlimits)."""
        n = len(self.spec.nodes)
        self.state.add("neigh_limit", registry=str(hostlimits.REGISTRY), nodes=n)  # intent first
        try:
            hostlimits.reserve(self.work_dir, n)
        except OSError as exc:
            need = hostlimits.wanted(hostlimits.read_limits(hostlimits.SYSCTL_DIR), hostlimits.neighbours_needed(n))
            raise ProvisioningError(
                f"{n} nodes need the kernel's neighbour table to hold about {hostlimits.neighbours_needed(n)} "
                f"entries and raising net.ipv4.neigh.default.gc_thresh3 failed ({exc}); fix: "
                f"sysctl -w net.ipv4.neigh.default.gc_thresh2={need['gc_thresh2']} "
                f"net.ipv4.neigh.default.gc_thresh3={need['gc_thresh3']}, or use fewer nodes") from None

    def _make_users(self, spec: LocalSpec, shared: Path) -> None:
        """The nodes' passwd and group (the host's plus the config's users), and their homes."""
        passwd, group, made = accounts.render(Path("/etc/passwd").read_text(), Path("/etc/group").read_text(),
                                              list(spec.users), shared / "home")
        (self.work_dir / "etc" / "passwd").write_text(passwd)
        (self.work_dir / "etc" / "group").write_text(group)
        accounts.make_homes(made)

    def _make_gpu_devices(self, n) -> None:
        """The node's GPUs in the upper layer of its /dev overlay: simulated ones as char 195:i;
        real ones with the host device's numbers, every other host GPU hidden (a whiteout), so
        the node sees exactly the GPUs it was given, under the host's names."""
        upper = self.node_paths(n.name).dev_upper
        if n.gpu_host_devices:
            host = preflight.host_dev()
            devices = {f"nvidia{i}": os.stat(host / f"nvidia{i}").st_rdev for i in n.gpu_host_devices}
            for other in sorted(p.name for p in Path("/dev").glob("nvidia*") if re.fullmatch(r"nvidia\d+", p.name)):
                if other not in devices:
                    os.mknod(upper / other, stat.S_IFCHR, os.makedev(0, 0))  # overlayfs whiteout
        else:
            devices = {f"nvidia{i}": os.makedev(GPU_MAJOR, i) for i in range(n.gpus)}
        for name, rdev in devices.items():
            os.mknod(upper / name, stat.S_IFCHR | 0o666, rdev)
            os.chmod(upper / name, 0o666)  # as NVIDIA's nodes; the devices cgroup is what restricts jobs

    def _up(self, progress: ProgressFn):
        spec = self.spec
        self._t0 = time.monotonic()
        progress("preflight", "", "")
        preflight.check_root()
        preflight.check_binaries(spec.accounting)
        preflight.check_paths(spec)
        preflight.check_real_gpus(spec)
        self.layout = cgroups.detect_layout()
        hierarchies = cgroups.v1_hierarchies() if self.layout == "v1" else []
        symlinks = cgroups.v1_symlinks() if self.layout == "v1" else {}
        self._clear_previous(progress)
        preflight.check_network(spec, recorded_bridge=False)
        self.warnings = preflight.warnings(spec)
        for w in self.warnings:
            progress("warning", "", w)
        self._mark("preflight")

        # work directory, state file, keys and configs
        progress("files", "", str(self.work_dir))
        st = self.state = State.create(self.work_dir, spec.cluster, layout=self.layout)
        st.resources.append({"kind": "workdir", "path": str(self.work_dir)})  # intent, before mkdir
        self.work_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.work_dir, 0o755)
        st.set("nodes", {n.name: {"role": n.role, "address": n.address} for n in spec.nodes})
        if self.warnings:
            st.set("warnings", self.warnings)
        shared = Path(spec.shared_dir)
        if not shared.exists() and self.work_dir not in shared.parents:
            st.add("dir", path=str(shared))
        shared.mkdir(parents=True, exist_ok=True)
        os.chmod(shared, 0o1777)
        sshp = self.ssh_paths
        keygen = self._keygen = keys.start_ssh_keygen(sshp, spec.cluster)
        for sub in ("etc/slurm", "munge", "state/slurmctld"):
            (self.work_dir / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.work_dir / "munge", 0o700)
        for n in spec.nodes:
            for d, mode in self.node_paths(n.name).dirs():
                d.mkdir(parents=True, exist_ok=True)
                os.chmod(d, mode)
        keys.make_munge_keys(self.work_dir / "munge" / "munge.key",
                             [self.node_paths(n.name).munge_key for n in spec.nodes])
        (self.work_dir / "etc" / "hosts").write_text(sshconf.render_hosts(spec))
        if spec.users:
            self._make_users(spec, shared)
        hardware = host_cpu_layout()
        layouts = slurmconf.cpu_layouts(spec.compute, hardware)
        st.set("cpu_layout", {"hardware": hardware.describe() if hardware else "",
                              "threads": hardware.threads if hardware else 0, "declared": sorted(layouts)})
        for name, text in slurmconf.render_all(spec, self.layout, self.work_dir, layouts).items():
            (self.conf_dir / name).write_text(text)
        if spec.accounting:  # slurmdbd refuses a config others can read
            dbd_conf = self.conf_dir / "slurmdbd.conf"
            dbd_conf.touch(mode=0o600)
            dbd_conf.write_text(slurmconf.render_slurmdbd_conf(spec, self.work_dir))
        for n in spec.compute:
            self._make_gpu_devices(n)
        self._mark("files")

        # network
        progress("network", "", f"bridge {spec.bridge}, {len(spec.nodes)} namespaces")
        records = [{"kind": "bridge", "name": spec.bridge}]
        for n in spec.nodes:
            records += [{"kind": "netns", "name": netns_name(spec.cluster, n.name)},
                        {"kind": "veth", "name": veth_name(spec.cluster, n.name)}]
        st.add_many(records)
        self._reserve_neighbours()
        lines = netns.bridge_lines(spec)
        for n in spec.nodes:
            lines += netns.node_host_lines(spec, n)
        proc = netns.ip_batch(lines)
        if proc.returncode != 0:
            raise ProvisioningError(f"creating the cluster network failed: {proc.stderr.strip()[-500:]}")
        self._mark("network")

        # cgroups
        progress("cgroups", "", self.layout)
        for n in spec.nodes:
            self._cg[n.name] = cgroups.node_cgroups(self.layout, spec.cluster, n.name, hierarchies)
        st.add_many([{"kind": "cgroup", "path": str(p)} for cg in self._cg.values() for p in cg.paths])
        for cg in self._cg.values():
            cgroups.create(cg)
        self._mark("cgroups")

        # anchors
        progress("namespaces", "", f"{len(spec.nodes)} nodes")
        for n in spec.nodes:
            paths = self.node_paths(n.name)
            script = mountns.anchor_script(spec, n, paths, self._cg[n.name], symlinks)
            err = open(paths.log / "anchor.log", "ab")
            try:
                p = subprocess.Popen(
                    mountns.anchor_argv(spec, n, script, self._cg[n.name]),
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                    start_new_session=True, env=daemons.DAEMON_ENV,
                )
            finally:
                err.close()
            self.anchors[n.name] = p
        # recorded once all are started (one state write, not one per node): a process that is
        # started but not yet recorded is still found by its network namespace and cgroups
        st.add_processes([(p.pid, name, "anchor") for name, p in self.anchors.items()])
        self._wait_anchors(progress)
        st.set("anchors", {name: p.pid for name, p in self.anchors.items()})
        self._mark("namespaces")

        # ssh keys (generated meanwhile) and sshd's files
        for p in keygen:
            _, err = p.communicate()
            if p.returncode != 0:
                raise ProvisioningError(f"ssh-keygen failed: {err.decode(errors='replace').strip()}")
        host_pub = (sshp.host_key.with_suffix(".pub")).read_text()
        sshp.authorized_keys.write_text(sshp.client_key.with_suffix(".pub").read_text())
        sshp.known_hosts.write_text(sshconf.render_known_hosts(spec, host_pub))
        sshp.sshd_config.write_text(sshconf.render_sshd_config(sshp.host_key, sshp.authorized_keys))

        # munged + sshd everywhere
        progress("daemons", "", "munged, sshd")
        for n in spec.nodes:
            paths = self.node_paths(n.name)
            self.launch_daemon(n, "munged", daemons.munged_argv(paths), [])
        for n in spec.nodes:
            paths = self.node_paths(n.name)
            self.launch_daemon(n, "sshd", daemons.sshd_argv(sshp, n.address, paths), [paths.log / "sshd.log"])
        self.record_launched()
        addons.start_all(self, progress)  # daemons that settle slowly start now, addons wait for them later
        self.wait_until(lambda: all(daemons.unix_listening(self.anchors[n.name].pid, daemons.MUNGE_SOCKET)
                               for n in spec.nodes),
                   "munged to create its socket", 10.0, [d for d in self.daemons if d.what == "munged"])
        self._mark("munge")

        # Slurm: slurmd only once slurmctld listens (a slurmd that cannot register at once
        # retries a second later, which would be most of the start-up time)
        ctl = spec.controller
        ctl_pid = self.anchors[ctl.name].pid
        ctl_paths = self.node_paths(ctl.name)
        timeout = spec.ready_timeout_s
        if spec.accounting:
            self._start_accounting(progress, timeout)
        progress("daemons", "", "slurmctld")
        self.launch_daemon(ctl, "slurmctld", daemons.slurmctld_argv(self.slurm_conf), [ctl_paths.log / "slurmctld.log"])
        self.record_launched()
        watch = [d for d in self.daemons if d.what in ("slurmctld", "munged", "sshd", "slurmdbd", "mariadbd")]
        self.wait_until(lambda: daemons.listening(ctl_pid, slurmconf.SLURMCTLD_PORT), "slurmctld to listen", timeout, watch)
        self._mark("slurmctld")
        progress("daemons", "", "slurmd")
        for n in spec.compute:
            paths = self.node_paths(n.name)
            self.launch_daemon(n, "slurmd", daemons.slurmd_argv(self.slurm_conf, n.name), [paths.log / "slurmd.log"])
        self.record_launched()
        self._mark("launched")
        progress("waiting", "", "compute nodes idle in sinfo, sshd listening")
        slurm = [d for d in self.daemons if d.what in ("slurmctld", "slurmd", "munged")]
        self._wait_idle(progress, timeout, slurm)
        self._mark("idle")
        sshds = [d for d in self.daemons if d.what == "sshd"]
        self.wait_until(lambda: all(daemons.listening(self.anchors[n.name].pid, sshconf.SSH_PORT) for n in spec.nodes),
                   "sshd to listen", timeout, sshds)
        self._mark("ready")

        self.cluster = self._build_cluster()
        addons.up_all(self, progress)
        self._mark("addons")
        st.set("ready", True)
        progress("ready", "", f"{len(spec.compute)} compute nodes idle in {time.monotonic() - self._t0:.2f}s")
        return self.cluster

    def _start_accounting(self, progress: ProgressFn, timeout: float) -> None:
        """MariaDB and slurmdbd on the controller, before slurmctld (which registers the
        cluster with slurmdbd when it starts)."""
        ctl = self.spec.controller
        pid = self.anchors[ctl.name].pid
        paths = self.node_paths(ctl.name)
        datadir = self.work_dir / "nodes" / ctl.name / "mysql"
        progress("daemons", ctl.name, "MariaDB (initialising), slurmdbd")
        datadir.mkdir(parents=True, exist_ok=True)
        init = subprocess.run(
            ["mariadb-install-db", "--user=root", f"--datadir={datadir}", "--auth-root-authentication-method=socket",
             "--skip-test-db"], capture_output=True, text=True, env=daemons.DAEMON_ENV,
        )
        if init.returncode != 0:
            raise ProvisioningError(f"mariadb-install-db failed for the accounting database: "
                                    f"{(init.stderr or init.stdout).strip()[-500:]}")
        (paths.run / "mysqld").mkdir(exist_ok=True)
        db = self.launch_daemon(ctl, "mariadbd", self.daemon_argv(ctl.name, "mariadbd"), [paths.log / "mariadb.log"])
        self.record_launched()
        self.wait_until(lambda: daemons.unix_listening(pid, slurmconf.MARIADB_SOCKET), "MariaDB to listen", timeout, [db])
        dbd = self.launch_daemon(ctl, "slurmdbd", self.daemon_argv(ctl.name, "slurmdbd"), [paths.log / "slurmdbd.log"])
        self.record_launched()
        self.wait_until(lambda: daemons.listening(pid, slurmconf.SLURMDBD_PORT), "slurmdbd to listen", timeout, [db, dbd])
        self._mark("accounting")

    def _clear_previous(self, progress: ProgressFn) -> None:
        """A state file from an earlier run: refuse if that cluster lives, else clean it up."""
        path = self.work_dir / STATE_FILE
        name = self.spec.cluster
        fix = f"destroy it first: python -m pytest_hpcvalidate destroy {name}"
        if path.exists():
            try:
                old = State.load(path)
            except (OSError, ValueError):
                old = None
            if old is not None:
                if old.owner_alive() and old.data["owner"]["pid"] != os.getpid():
                    raise ProvisioningError(
                        f"cluster {name!r} is in use by process {old.data['owner']['pid']} (state {path}); "
                        f"wait for it, or {fix}"
                    )
                live = [r for r in old.of_kind("process") if r.get("what") == "anchor"
                        and same_process(r["pid"], r.get("start"))]
                if live:
                    raise ProvisioningError(f"cluster {name!r} is still running (kept by an earlier run?); {fix}")
                progress("cleanup", "", "removing what an earlier run left")
                errors = teardown(old)
                if errors:
                    raise ProvisioningError(
                        f"cleaning up the earlier cluster {name!r} failed: {'; '.join(errors)[:600]}")
        # resources named after this cluster that no state file lists (a run killed before its
        # first state write, a lost state file): ours by name and alias, so swept here
        orphans = swept_state(name, self.work_dir.parent, self.work_dir)
        if any(r["kind"] != "workdir" for r in orphans.resources):
            progress("cleanup", "", "removing resources an earlier run left unrecorded")
            errors = teardown(orphans)
            if errors:
                raise ProvisioningError(f"cleaning up what an earlier {name!r} left failed: {'; '.join(errors)[:600]}")
        if self.work_dir.exists():
            if mounts_under(self.work_dir):
                raise ProvisioningError(f"something is mounted under {self.work_dir}; {fix}")
            shutil.rmtree(self.work_dir)

    def anchor_pid(self, node: str) -> int:
        if node in self.anchors:
            return self.anchors[node].pid
        assert self.state is not None
        return int(self.state.data["anchors"][node])

    def launch_daemon(self, node: NodeSpec, what: str, argv: list[str], logs: list[Path]) -> Daemon:
        d = daemons.launch(node.name, what, self.anchor_pid(node.name), self._cg[node.name],
                           self.node_paths(node.name), argv, logs)
        self.daemons.append(d)
        return d

    def record_launched(self) -> None:
        assert self.state is not None
        recorded = {r["pid"] for r in self.state.of_kind("process")}
        self.state.add_processes([(d.pid, d.node, d.what) for d in self.daemons if d.pid not in recorded])

    def _wait_anchors(self, progress: ProgressFn) -> None:
        sel = selectors.DefaultSelector()
        pending = {}
        for name, p in self.anchors.items():
            assert p.stdout is not None
            sel.register(p.stdout, selectors.EVENT_READ, name)
            pending[name] = b""
        deadline = time.monotonic() + ANCHOR_TIMEOUT_S
        try:
            while pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ProvisioningError(
                        f"node namespaces not ready after {ANCHOR_TIMEOUT_S:.0f}s: {', '.join(pending)}")
                for key, _ in sel.select(timeout=left):
                    name = key.data
                    chunk = os.read(key.fd, 4096)
                    if not chunk:
                        log = self.node_paths(name).log / "anchor.log"
                        tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log.exists() else []
                        raise ProvisioningError(
                            f"setting up node {name} failed (namespaces/mounts): {' | '.join(tail) or 'no output'}"
                        )
                    pending[name] += chunk
                    if mountns.READY.encode() in pending[name]:
                        del pending[name]
                        sel.unregister(key.fileobj)
                        progress("namespaces", name, "ready")
        finally:
            sel.close()
            for p in self.anchors.values():
                if p.stdout is not None:
                    p.stdout.close()

    def _check_alive(self, watch: list[Daemon]) -> None:
        for d in watch:
            code = d.exited()
            if code is not None:
                tail = d.log_tail() or "no log"
                hint = next((h for what, words, h in KNOWN_START_FAILURES if what == d.what and words in tail), "")
                raise ProvisioningError(
                    f"{d.what} on node {d.node} exited with status {code} while starting: {tail}{hint}")

    def wait_until(self, cond, what: str, timeout: float, watch: list[Daemon]) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive(watch)
            if cond():
                return
            if time.monotonic() >= deadline:
                tails = "; ".join(f"{d.what}@{d.node}: {d.log_tail(5)}" for d in watch)[-1500:]
                raise ProvisioningError(f"timed out after {timeout:.0f}s waiting for {what}: {tails}")
            time.sleep(POLL_S)

    def _sinfo(self) -> dict[str, str]:
        ctl = self.anchors[self.spec.controller.name].pid
        try:
            proc = subprocess.run(
                ["nsenter", "-t", str(ctl), "-n", "-m", "-u", "--", "sinfo", "-h", "-N", "-o", "%N %T"],
                capture_output=True, text=True, timeout=10, env=daemons.DAEMON_ENV,
            )
        except subprocess.TimeoutExpired:
            return {}
        states = {}
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2:
                states[parts[0]] = parts[1]
        return states

    def _wait_idle(self, progress: ProgressFn, timeout: float, watch: list[Daemon]) -> None:
        want = {n.name for n in self.spec.compute}
        deadline = time.monotonic() + timeout
        seen: dict[str, str] = {}
        while True:
            self._check_alive(watch)
            states = self._sinfo()
            for name, s in states.items():
                if seen.get(name) != s:
                    progress("slurm", name, s)
            seen = states
            if want and all(states.get(n) == "idle" for n in want):
                return
            if time.monotonic() >= deadline:
                bad = {n: states.get(n, "missing") for n in sorted(want) if states.get(n) != "idle"}
                tails = "; ".join(f"{d.what}@{d.node}: {d.log_tail(4)}" for d in watch if d.what != "munged")
                raise ProvisioningError(
                    f"compute nodes not idle after {timeout:.0f}s ({', '.join(f'{k}={v}' for k, v in bad.items())}): "
                    f"{tails[-1500:]}"
                )
            time.sleep(SINFO_POLL_S)

    # -- the Cluster ---------------------------------------------------------------------------
    def _build_cluster(self):
        from ...cluster import Cluster, Node
        from ...transport.nsenter import NsenterTransport

        try:
            from ...transport.ssh import SSHTransport
        except ImportError:  # pragma: no cover - the SSH transport ships with the package
            SSHTransport = None  # type: ignore[assignment]
        assert self.state is not None
        anchors = self.state.data.get("anchors", {})
        sshp = self.ssh_paths
        nodes = []
        for n in self.spec.nodes:
            pid = int(anchors[n.name])
            ssh = None
            if SSHTransport is not None:
                ssh = SSHTransport(n.name, n.address, port=sshconf.SSH_PORT, user="root",
                                   key_file=str(sshp.client_key), known_hosts=str(sshp.known_hosts),
                                   host_key_policy="strict")
            facts = {
                "anchor_pid": pid,
                "netns": netns_name(self.spec.cluster, n.name),
                "cgroup_layout": self.state.data.get("meta", {}).get("layout", self.layout),
                "cpus": n.cpus,
                "memory_mb": n.memory_mb,
                "gpus": n.gpus,
                "gpu_type": n.gpu_type,
                "gpu_devices": slurmconf.gpu_devices(n),
                "work_dir": str(self.node_paths(n.name).root),
            }
            if n.role == "compute" and (why := self._cpu_layout_differs(n)):
                facts["cpu_layout_differs"] = why
            nodes.append(Node(n.name, n.role, n.address, transport=NsenterTransport(n.name, pid), ssh=ssh, facts=facts))
        return Cluster(name=self.spec.cluster, provider="local", nodes=nodes,
                       shared_dir=Path(self.spec.shared_dir), access_hint=self.access_hint())

    def _cpu_layout_differs(self, n: NodeSpec) -> str:
        """Why slurm.conf does not give the node this machine's CPU layout; "" where it does."""
        assert self.state is not None
        recorded = self.state.data.get("cpu_layout") or {}
        if n.name in recorded.get("declared", ()):
            return ""
        if not recorded.get("hardware"):
            return "slurmd -C did not answer on this machine when the cluster was made: slurm.conf gives CPUs= alone"
        return (f"Slurm is given {n.cpus} CPU(s) of this machine's {recorded['threads']} ({recorded['hardware']}): "
                "the local provider's nodes share one machine, and a share other than all of its threads or all "
                "of its cores has no layout of its own (slurm.conf gives CPUs= alone)")

    def access_hint(self) -> str:
        assert self.state is not None
        anchors = self.state.data.get("anchors", {})
        sshp = self.ssh_paths
        lines = [f"local cluster {self.spec.cluster!r} (work dir {self.work_dir}):"]
        for n in self.spec.nodes:
            lines.append(
                f"  {n.name:<10} {n.role:<10} nsenter -t {anchors.get(n.name, '?')} -n -m -u bash   |   "
                f"ssh -i {sshp.client_key} -o UserKnownHostsFile={sshp.known_hosts} root@{n.address}"
            )
        lines.append(f"  destroy it: python -m pytest_hpcvalidate destroy {self.spec.cluster}")
        return "\n".join(lines)

    def attach(self):
        """The Cluster of this spec's running cluster, rebuilt from its state file."""
        path = self.work_dir / STATE_FILE
        if not path.exists():
            raise ProvisioningError(f"no running local cluster {self.spec.cluster!r} (no {path})")
        self.state = State.load(path)
        if not self.state.data.get("ready"):
            raise ProvisioningError(f"local cluster {self.spec.cluster!r} is not ready (state {path})")
        for r in self.state.of_kind("process"):
            if r.get("what") == "anchor" and not same_process(r["pid"], r.get("start")):
                raise ProvisioningError(
                    f"node {r['node']} of cluster {self.spec.cluster!r} is gone (anchor pid {r['pid']}); "
                    f"python -m pytest_hpcvalidate cleanup --cluster {self.spec.cluster}"
                )
        self.layout = self.state.data.get("meta", {}).get("layout") or cgroups.detect_layout()
        hierarchies = cgroups.v1_hierarchies() if self.layout == "v1" else []
        for n in self.spec.nodes:
            self._cg[n.name] = cgroups.node_cgroups(self.layout, self.spec.cluster, n.name, hierarchies)
        restored = self._restore_etc_binds()
        self.cluster = self._build_cluster()
        self.cluster.notes += restored
        return self.cluster

    def _restore_etc_binds(self) -> list[str]:
        """Bind again what the host detached from the nodes' /etc since they were made (see
        ``mountns.detached_binds``). Under a lock: xdist workers attach at once. Returns the
        note for the run's summary, if any."""
        assert self.state is not None
        anchors = self.state.data.get("anchors", {})
        binds = mountns.etc_binds(self.spec)
        restored = []
        with open(self.work_dir / ".etc-binds.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for n in self.spec.nodes:
                pid = int(anchors[n.name])
                gone = mountns.detached_binds(pid, binds)
                for src, dst in gone:
                    r = subprocess.run(mountns.rebind_argv(pid, src, dst), capture_output=True, text=True)
                    if r.returncode != 0:
                        raise ProvisioningError(
                            f"node {n.name} of cluster {self.spec.cluster!r}: {dst} is no longer the cluster's "
                            f"({src}) and binding it again failed: {r.stderr.strip()[:300]}"
                        )
                if gone:
                    restored.append(f"{n.name} {', '.join(d for _, d in gone)}")
        if not restored:
            return []
        return [f"bound again what the host had detached from the nodes' /etc by replacing its own file "
                f"(useradd, a package install): {'; '.join(restored)}"]

    # -- daemons of a running cluster (fault injection) ---------------------------------------
    DAEMONS = ("munged", "sshd", "slurmctld", "slurmd", "mariadbd", "slurmdbd")

    def daemon_argv(self, node: str, what: str) -> list[str]:
        n = self.node_spec_of(node)
        paths = self.node_paths(node)
        if what == "munged":
            return daemons.munged_argv(paths)
        if what == "sshd":
            return daemons.sshd_argv(self.ssh_paths, n.address, paths)
        if what == "slurmctld" and n.role == "controller":
            return daemons.slurmctld_argv(self.slurm_conf)
        if what == "slurmd" and n.role == "compute":
            return daemons.slurmd_argv(self.slurm_conf, node)
        if what == "mariadbd" and n.role == "controller" and self.spec.accounting:
            return daemons.mariadbd_argv(self.work_dir / "nodes" / node / "mysql", paths, slurmconf.MARIADB_SOCKET)
        if what == "slurmdbd" and n.role == "controller" and self.spec.accounting:
            return daemons.slurmdbd_argv()
        argv = addons.daemon_argv(self, node, what)
        if argv:
            return argv
        raise ValueError(f"node {node} ({n.role}) runs no {what!r}; daemons: {', '.join(self.DAEMONS)}")

    def node_spec_of(self, node: str) -> NodeSpec:
        for n in self.spec.nodes:
            if n.name == node:
                return n
        raise KeyError(f"no node {node!r} in cluster {self.spec.cluster!r}")

    def daemon_pids(self, node: str, what: str) -> list[int]:
        """Recorded ``what`` processes of ``node`` that are still alive."""
        assert self.state is not None, "the cluster is not up (call up() or attach())"
        return [r["pid"] for r in self.state.of_kind("process")
                if r.get("node") == node and r.get("what") == what and same_process(r["pid"], r.get("start"))
                and procs.alive(r["pid"])]

    def stop_daemon(self, node: str, what: str, sig: int = signal.SIGTERM, timeout: float = 10.0) -> list[int]:
        """Signal ``node``'s ``what`` daemon(s) and wait until they are gone; returns their pids."""
        pids = self.daemon_pids(node, what)
        procs.kill(pids, sig)
        left = procs.wait_gone(pids, timeout)
        if left:
            procs.kill(left)
            procs.wait_gone(left, 2.0)
        for d in self.daemons:
            if d.pid in pids:
                d.proc.poll()
        return pids

    def start_daemon(self, node: str, what: str) -> int:
        """(Re)start ``node``'s ``what`` daemon (e.g. after swapping its munge key); returns its pid.

        Launched exactly as during ``up()``: the node's cgroups and namespaces, foreground, recorded.
        """
        n = self.node_spec_of(node)
        paths = self.node_paths(node)
        d = self.launch_daemon(n, what, self.daemon_argv(node, what), [paths.log / f"{what}.log"])
        self.record_launched()
        return d.pid

    # -- down ----------------------------------------------------------------------------------
    def _teardown(self) -> list[str]:
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()
        # only what this object made (up) or took over (attach): a cluster this run refused to
        # touch (still running, owned by another process) is never torn down from here
        state = self.state
        if state is None:
            return []
        for p in self._keygen:  # short-lived; wait so that none outlives a failed up()
            with contextlib.suppress(Exception):
                p.wait(timeout=10)
        errors = addons.down_all(self) if self.cluster is not None else []
        errors += teardown(state)
        for p in [*self.anchors.values(), *(d.proc for d in self.daemons), *self._keygen]:
            with contextlib.suppress(Exception):
                p.poll()
            for f in (p.stdout, p.stderr):
                if f is not None:
                    with contextlib.suppress(Exception):
                        f.close()
        procs.reap(p.pid for p in self.anchors.values())
        if not errors:
            self.state = None
            self.anchors.clear()
            self.daemons.clear()
            self.cluster = None
        return errors

    def down(self) -> None:
        """Destroy the cluster; safe to call twice. Raises ProvisioningError listing what stayed."""
        start = time.monotonic()
        errors = self._teardown()
        self.timings["down"] = round(time.monotonic() - start, 4)
        if errors:
            raise ProvisioningError(
                f"tearing down local cluster {self.spec.cluster!r} left: {'; '.join(errors)[:1500]}; "
                f"retry: python -m pytest_hpcvalidate cleanup --cluster {self.spec.cluster}"
            )
