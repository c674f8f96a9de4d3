"""The libvirt provider: the config's cluster as VMs on this host, reached over SSH.

``LibvirtCluster(model).up(progress) -> Cluster``, in this order:

1. libvirt reachable (libvirtd started when missing), acceleration chosen (KVM only where
   it can be trusted, see :func:`.host.kvm_verdict`), leftovers of an earlier run removed
2. the guest image, from the cache or built (:mod:`.image`)
3. work directory and state file; cluster keys (ssh-keygen in the background, one munge key),
   one qcow2 overlay per node on the shared root image
4. per node: an initrd = the image's + an archive of that node's files (:mod:`.guest`)
5. the isolated network, then every domain (started together)
6. ready when sshd answers on every node and every compute node is ``idle`` in ``sinfo``

Every domain and the network are recorded in the state file before they are created; any
exception (Ctrl-C included) tears down what was made before it propagates. Slurm runs the
local provider's configuration, so every suite runs unchanged over SSH.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ...config.model import Libvirt
from ..base import EngineProvider, ProgressFn, ProvisioningError, no_progress
from ..local import accounts, keys, netns, sshconf
from ..local.engine import _signals_deferred
from ..local.keys import SshPaths
from ..local.provider import spec_from_config
from ..local.spec import LocalSpec, NodeSpec
from ..local.state import STATE_FILE, State
from . import cleanup, guest, host, image, initramfs, passthrough, xmldefs
from .cleanup import STATE_ROOT, domain_name, network_name

SSH_PORT = sshconf.SSH_PORT
POLL_S = 0.1
IDLE_TIMEOUT_S = 60.0
#: ``no_timer_check``: under TCG on a busy host the kernel's IO-APIC timer check can fail and
#: panic in x86_late_time_init ("IO-APIC + timer doesn't work"), seen here under load
BASE_CMDLINE = "console=ttyS0 panic=-1 quiet mitigations=off no_timer_check"


class LibvirtCluster:
    """One libvirt cluster: its config, what was made for it, and how to undo it."""

    def __init__(self, model, state_root: Path = STATE_ROOT):
        self.model = model
        self.lv = model.libvirt or Libvirt()
        self.work_dir = Path(state_root) / model.name
        base = spec_from_config(model, Path(state_root))
        # Slurm's files name the guests' own directory; the shared directory is the host's path,
        # exported to every guest at that same path
        self.spec: LocalSpec = dataclasses.replace(base, work_dir=guest.GUEST_WORK_DIR,
                                                   shared_dir=self.work_dir / "shared")
        self.state: State | None = None
        self.cluster = None
        self.image: image.GuestImage | None = None
        self.domain_type = "qemu"
        self.timings: dict[str, float] = {}
        self.warnings: list[str] = []
        self._keygen: list[subprocess.Popen] = []
        self._t0 = 0.0

    # -- paths ---------------------------------------------------------------------------------
    def node_dir(self, node: str) -> Path:
        return self.work_dir / "nodes" / node

    @property
    def ssh_paths(self) -> SshPaths:
        return SshPaths(self.work_dir / "ssh")

    def console_log(self, node: str) -> Path:
        return self.node_dir(node) / "console.log"

    # -- up ------------------------------------------------------------------------------------
    def up(self, progress: ProgressFn = no_progress):
        try:
            return self._up(progress)
        except BaseException as exc:
            with _signals_deferred():
                with contextlib.suppress(Exception):
                    progress("teardown", "", f"provisioning failed ({type(exc).__name__}); removing what was made")
                errors = self._teardown()
            if errors and isinstance(exc, ProvisioningError):
                exc.args = (f"{exc.args[0]} (and cleanup left: {'; '.join(errors)[:600]})",)
            raise

    def _mark(self, name: str) -> None:
        self.timings[name] = round(time.monotonic() - self._t0, 3)

    def _up(self, progress: ProgressFn):
        self._t0 = time.monotonic()
        spec, lv = self.spec, self.lv
        progress("preflight", "", lv.uri)
        if os.geteuid() != 0:
            raise ProvisioningError(
                "the libvirt provider needs root (qemu:///system, the cluster network); run as root")
        conn = host.open_connection(lv.uri)
        conn.close()
        self._clear_previous(progress)
        conflicts = netns.subnet_conflicts(spec)
        if conflicts:
            raise ProvisioningError(f"subnet {spec.subnet} of cluster {spec.cluster!r} collides with "
                                    f"{', '.join(conflicts)} on this host; choose another network.subnet")
        self.domain_type, why = self._pick_domain_type()
        progress("preflight", "", f"domain type {self.domain_type}: {why}")
        self._mark("preflight")

        self.image = image.ensure_image(image.ImageSpec().with_extra(lv.guest_packages), Path(lv.image_cache), progress)
        self._mark("image")

        progress("files", "", str(self.work_dir))
        st = self.state = State.create(self.work_dir, spec.cluster, uri=lv.uri, domain_type=self.domain_type,
                                       image=self.image.key)
        st.resources.append({"kind": "workdir", "path": str(self.work_dir)})
        self.work_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.work_dir, 0o700)
        st.set("nodes", {n.name: {"role": n.role, "address": n.address} for n in spec.nodes})
        sshp = self.ssh_paths
        self._keygen = keys.start_ssh_keygen(sshp, spec.cluster)
        shared = Path(spec.shared_dir)
        shared.mkdir(parents=True, exist_ok=True)
        os.chmod(shared, 0o1777)
        accounts.make_homes(guest.guest_accounts(spec)[2])  # the users' homes, for every guest
        self._make_share_dirs(progress)
        munge_key = self.work_dir / "munge.key"
        keys.make_munge_keys(munge_key, [])
        overlays = [self._start_overlay(n) for n in spec.nodes]
        for n, proc in zip(spec.nodes, overlays):
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise ProvisioningError(f"qemu-img create (overlay of {n.name}) failed: {err.strip()[-300:]}")
        for p in self._keygen:
            _, err = p.communicate()
            if p.returncode != 0:
                raise ProvisioningError(f"ssh-keygen failed: {err.decode(errors='replace').strip()}")
        secrets = guest.ClusterSecrets(
            munge_key=munge_key.read_bytes(),
            host_key=sshp.host_key.read_bytes(),
            host_pub=sshp.host_key.with_suffix(".pub").read_text(),
            client_key=sshp.client_key.read_bytes(),
            client_pub=sshp.client_key.with_suffix(".pub").read_text(),
        )
        sshp.known_hosts.write_text(sshconf.render_known_hosts(spec, secrets.host_pub))
        self._write_initrds(secrets)
        self._mark("files")

        progress("network", "", f"{network_name(spec.cluster)} on {spec.bridge}")
        self._boot(progress)
        self.cluster = self._build_cluster()
        self._wait_idle(progress)
        self._mark("idle")
        st.set("ready", True)
        progress("ready", "", f"{len(spec.compute)} compute VMs idle in {time.monotonic() - self._t0:.1f}s")
        return self.cluster

    def _pick_domain_type(self) -> tuple[str, str]:
        wanted = self.lv.domain_type
        if wanted != "auto":
            return wanted, "as configured (libvirt.domain_type)"
        ok, why = host.kvm_verdict()
        return ("kvm" if ok else "qemu"), why

    def _clear_previous(self, progress: ProgressFn) -> None:
        name = self.spec.cluster
        fix = f"destroy it first: python -m pytest_hpcvalidate destroy {name}"
        path = self.work_dir / STATE_FILE
        if path.exists():
            try:
                old = State.load(path)
            except (OSError, ValueError):
                old = None
            if old is not None and old.owner_alive() and old.data["owner"]["pid"] != os.getpid():
                raise ProvisioningError(f"libvirt cluster {name!r} is in use by process {old.data['owner']['pid']}; "
                                        f"wait for it, or {fix}")
            if old is not None and old.data.get("ready"):
                raise ProvisioningError(f"libvirt cluster {name!r} is still up (kept by an earlier run?); {fix}")
        errors = cleanup.cleanup_stale(self.work_dir.parent, name)
        if errors:
            raise ProvisioningError(f"cleaning up what an earlier {name!r} left failed: {'; '.join(errors)[:600]}")
        left = cleanup.leftovers(name, self.lv.uri, self.work_dir.parent)
        if any(r.startswith(("domain ", "network ")) for r in left):
            raise ProvisioningError(f"domains or the network of {name!r} are still defined; {fix}")

    def _start_overlay(self, n: NodeSpec) -> subprocess.Popen:
        assert self.image is not None
        d = self.node_dir(n.name)
        d.mkdir(parents=True, exist_ok=True)
        argv = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(self.image.rootfs),
                str(d / "overlay.qcow2")]
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def _mounts(self, n: NodeSpec) -> tuple[list[guest.GuestMount], list[xmldefs.FsShare]]:
        """The shared directory plus the node's configured virtio-fs mounts."""
        shared = str(self.spec.shared_dir)
        mounts = [guest.GuestMount(guest.SHARED_TAG, shared, "rw")]
        shares = [xmldefs.FsShare(guest.SHARED_TAG, shared, "none")]
        for m in self._resolved(n.name).virtio_fs:
            mounts.append(guest.GuestMount(m.tag, m.mount_point, guest.mount_options(m.options)))
            shares.append(xmldefs.FsShare(m.tag, m.host_path, xmldefs.CACHE_MODES[m.cache]))
        return mounts, shares

    def _make_share_dirs(self, progress: ProgressFn) -> None:
        """Create missing virtio-fs host directories (recorded: teardown removes only those)."""
        assert self.state is not None
        for path in sorted({m.host_path for n in self.model.resolved_nodes() for m in n.virtio_fs}):
            p = Path(path)
            if p.is_dir():
                continue
            if p.exists():
                raise ProvisioningError(
                    f"virtio_fs_mounts host_path {path} exists and is not a directory; fix the config")
            self.state.add("dir", path=path)
            p.mkdir(parents=True)
            progress("files", "", f"created virtio-fs host directory {path} (removed at teardown)")

    def _guest_size(self, n: NodeSpec) -> tuple[int, int]:
        """(vCPUs, RAM in MiB) of the node's VM. vCPUs: libvirt.guest_cpus, else the node's cpus
        at most this host's cores. RAM: libvirt.guest_memory_mb, else memory_mb plus what the
        guest's kernel keeps (:func:`guest_ram_mib`), at most a fair share of this host's
        available memory. Slurm declares cpus and memory_mb either way. A login node's VM is the
        controller's size."""
        lv = self.lv
        if n.role == "login":  # the config gives login nodes no resources: sized like the controller
            n = next(c for c in self.spec.nodes if c.role == "controller")
        vcpus = lv.guest_cpus or max(1, min(n.cpus, os.cpu_count() or 1))
        if lv.guest_memory_mb:
            return vcpus, lv.guest_memory_mb
        share = int(_available_mib() * 0.8 / max(1, len(self.spec.nodes)))
        want = guest_ram_mib(n.memory_mb)
        return vcpus, (max(256, min(want, share)) if share else want)

    def _resolved(self, name: str):
        return next(r for r in self.model.resolved_nodes() if r.name == name)

    def _write_initrds(self, secrets: guest.ClusterSecrets) -> None:
        assert self.image is not None
        base = self.image.initrd.read_bytes()
        prefix = ipaddress.ip_network(self.spec.subnet, strict=False).prefixlen
        for n in self.spec.nodes:
            mounts, _ = self._mounts(n)
            files = guest.node_files(self.spec, n, secrets, mounts, prefix)
            archive = initramfs.newc_archive({f"{initramfs.NODE_DIR}/{p}": v for p, v in files.items()})
            target = self.node_dir(n.name) / "initrd.img"
            target.write_bytes(initramfs.append_archive(base, archive))
            os.chmod(target, 0o600)

    def _domain_spec(self, n: NodeSpec, domain_type: str, vcpus: int, memory_mib: int) -> xmldefs.DomainSpec:
        assert self.image is not None
        _, shares = self._mounts(n)
        hostdevs, _ = passthrough.planned_hostdevs(self._resolved(n.name).pcie)
        return xmldefs.DomainSpec(
            name=domain_name(self.spec.cluster, n.name),
            domain_type=domain_type,
            vcpus=vcpus,
            memory_mib=memory_mib,
            kernel=str(self.image.kernel),
            initrd=str(self.node_dir(n.name) / "initrd.img"),
            cmdline=BASE_CMDLINE,
            disk=str(self.node_dir(n.name) / "overlay.qcow2"),
            network=network_name(self.spec.cluster),
            mac=xmldefs.mac_for(self.spec.cluster, n.name),
            console_log=str(self.console_log(n.name)),
            shares=tuple(shares),
            hostdevs=tuple(xmldefs.PciHostdev(a) for a in hostdevs),
            metadata={"name": self.spec.cluster, "node": n.name, "role": n.role},
        )

    # -- network and domains -------------------------------------------------------------------
    def _boot(self, progress: ProgressFn) -> None:
        import libvirt

        spec, st = self.spec, self.state
        assert st is not None
        for n in spec.nodes:
            _, why = passthrough.planned_hostdevs(self._resolved(n.name).pcie)
            if why:
                self.warnings.append(f"{n.name}: {why}")
                progress("warning", n.name, why)
        conn = host.open_connection(self.lv.uri)
        try:
            st.add("network", name=network_name(spec.cluster))
            try:
                conn.networkCreateXML(xmldefs.network_xml(network_name(spec.cluster), spec.bridge,
                                                          spec.bridge_address, spec.subnet, spec.mtu))
            except libvirt.libvirtError as exc:
                raise ProvisioningError(f"creating network {network_name(spec.cluster)} failed: {exc}") from None
            self._mark("network")
            attempt = self.domain_type
            while True:
                progress("domains", "", f"starting {len(spec.nodes)} {attempt} domains")
                self._start_domains(conn, attempt)
                self._mark("started")
                timeout = self.lv.boot_timeout_s
                if attempt == "kvm" and self.lv.domain_type == "auto":
                    timeout = min(timeout, 60.0)  # time-boxed: a hung nested KVM must not eat the run
                late = self._wait_ssh(progress, timeout)
                if not late:
                    break
                tails = "; ".join(f"{n}: {self._console_tail(n)}" for n in late)
                if attempt == "kvm" and self.lv.domain_type == "auto":
                    msg = (f"KVM guests did not reach sshd within {timeout:.0f}s ({', '.join(late)}); "
                           f"falling back to TCG (domain type qemu). Console: {tails[-600:]}")
                    self.warnings.append(msg)
                    progress("warning", "", msg)
                    for n in spec.nodes:
                        cleanup.remove_domain(conn, domain_name(spec.cluster, n.name))
                    attempt = self.domain_type = "qemu"
                    st.data["meta"]["domain_type"] = "qemu"
                    st.save()
                    continue
                raise ProvisioningError(
                    f"{', '.join(late)} did not answer on port {SSH_PORT} within {timeout:.0f}s of starting "
                    f"({attempt} domains); console: {tails[-1500:]}")
            self._mark("ssh")
        finally:
            conn.close()

    def _start_domains(self, conn, domain_type: str) -> None:
        import libvirt

        spec, st = self.spec, self.state
        assert st is not None
        names = [domain_name(spec.cluster, n.name) for n in spec.nodes]
        recorded = {r["name"] for r in st.of_kind("domain")}
        st.add_many([{"kind": "domain", "name": d} for d in names if d not in recorded])
        for n in spec.nodes:
            self.console_log(n.name).unlink(missing_ok=True)
        # sized before any VM starts (the fair share follows the host's available memory)
        sizes = {n.name: self._guest_size(n) for n in spec.nodes}
        st.set("guests", {name: {"vcpus": c, "memory_mib": m} for name, (c, m) in sizes.items()})

        def start(n: NodeSpec) -> str | None:
            try:
                conn.createXML(xmldefs.domain_xml(self._domain_spec(n, domain_type, *sizes[n.name])), 0)
            except libvirt.libvirtError as exc:
                return f"starting VM {n.name} failed: {exc}"
            return None

        with ThreadPoolExecutor(max_workers=min(8, len(spec.nodes))) as pool:
            errors = [e for e in pool.map(start, spec.nodes) if e]
        if errors:
            raise ProvisioningError("; ".join(errors))

    def _console_tail(self, node: str, lines: int = 4) -> str:
        try:
            text = self.console_log(node).read_text(errors="replace")
        except OSError:
            return "no console output"
        kept = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return " | ".join(kept[-lines:]) or "no console output"

    def _wait_ssh(self, progress: ProgressFn, timeout: float) -> list[str]:
        """Poll every node's sshd; returns the nodes still silent at the deadline."""
        pending = {n.name: n.address for n in self.spec.nodes}
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for name, addr in list(pending.items()):
                if _banner(addr, SSH_PORT):
                    del pending[name]
                    progress("boot", name, f"sshd answers ({time.monotonic() - self._t0:.1f}s)")
            if pending:
                time.sleep(POLL_S)
        return sorted(pending)

    def _wait_idle(self, progress: ProgressFn) -> None:
        assert self.cluster is not None
        ctl = self.cluster.controller
        want = {n.name for n in self.spec.compute}
        deadline = time.monotonic() + max(IDLE_TIMEOUT_S, self.model.thresholds.node_register_s_max)
        states: dict[str, str] = {}
        while True:
            r = ctl.run("sinfo -h -N -o '%N %T'", timeout=20)
            seen = dict(line.split(None, 1) for line in r.stdout.splitlines() if len(line.split()) == 2)
            if seen != states:
                for k, v in seen.items():
                    progress("slurm", k, v)
                states = seen
            if want and all(states.get(n) == "idle" for n in want):
                return
            if time.monotonic() >= deadline:
                bad = ", ".join(f"{n}={states.get(n, 'missing')}" for n in sorted(want) if states.get(n) != "idle")
                logs = []
                for n in self.cluster.compute:
                    tail = n.run(f"tail -n 3 {guest.GUEST_WORK_DIR}/nodes/{n.name}/log/slurmd.log", timeout=10)
                    logs.append(f"slurmd@{n.name}: {' | '.join(tail.stdout.splitlines())}")
                raise ProvisioningError(f"compute VMs not idle in Slurm ({bad}); {'; '.join(logs)[-1200:]}"
                                        + (f"; sinfo: {r.describe()}" if not r.ok else ""))
            time.sleep(0.2)

    # -- the Cluster -----------------------------------------------------------------------------
    def _build_cluster(self):
        from ...cluster import Cluster, Node
        from ...transport.ssh import SSHTransport

        sshp = self.ssh_paths
        nodes = []
        for n in self.spec.nodes:
            t = SSHTransport(n.name, n.address, port=SSH_PORT, user="root", key_file=str(sshp.client_key),
                             known_hosts=str(sshp.known_hosts), host_key_policy="strict")
            facts = {
                "domain": domain_name(self.spec.cluster, n.name),
                "domain_type": self.domain_type,
                "cpus": n.cpus,
                "memory_mb": n.memory_mb,
                "gpus": n.gpus,
                "gpu_type": n.gpu_type,
                "console_log": str(self.console_log(n.name)),
            }
            facts.update(self._size_facts(n))
            _, left_out = passthrough.planned_hostdevs(self._resolved(n.name).pcie)
            if left_out:  # the guest-side GPU checks skip with this reason instead of failing
                facts["passthrough_left_out"] = left_out
            nodes.append(Node(n.name, n.role, n.address, transport=t, ssh=t, facts=facts))
        return Cluster(name=self.spec.cluster, provider="libvirt", nodes=nodes,
                       shared_dir=Path(self.spec.shared_dir), access_hint=self.access_hint())

    def _size_facts(self, n: NodeSpec) -> dict[str, str]:
        """Where the node's VM is not what Slurm declares (which it is given all the same,
        config_overrides), why: the checks holding the VM to Slurm's numbers are not applicable."""
        facts = {}
        if short := self._short_guest(n):
            facts["declared_resources"] = short
        got = self._recorded_size(n)
        if not got or got["vcpus"] != n.cpus:  # a VM of N vCPUs has N sockets, as CPUs=N alone declares
            facts["cpu_layout_differs"] = (f"the VM got {got['vcpus']} vCPU(s) for Slurm's {n.cpus} CPU(s): "
                                           "slurm.conf's CPUs= alone is not its layout" if got
                                           else "the VM's size is not recorded")
        return facts

    def _recorded_size(self, n: NodeSpec) -> dict | None:
        """{"vcpus", "memory_mib"} the node's VM was given (the state file), None if not recorded."""
        return (self.state.data.get("guests") or {}).get(n.name) if self.state else None

    def _short_guest(self, n: NodeSpec) -> str:
        """How the node's VM is smaller than what Slurm declares for it, "" where it is not."""
        got = self._recorded_size(n)
        if not got:
            return "the VM's size is not recorded"
        if got["vcpus"] >= n.cpus and got["memory_mib"] >= guest_ram_mib(n.memory_mb):
            return ""
        return (f"the VM got {got['vcpus']} vCPU(s) and {got['memory_mib']} MiB of RAM for Slurm's {n.cpus} CPU(s) "
                f"and {n.memory_mb} MiB: libvirt.guest_cpus, libvirt.guest_memory_mb or this host's fair share")

    def access_hint(self) -> str:
        sshp = self.ssh_paths
        lines = [f"libvirt cluster {self.spec.cluster!r} ({self.domain_type} domains, work dir {self.work_dir}):"]
        for n in self.spec.nodes:
            ssh = f"ssh -i {sshp.client_key} -o UserKnownHostsFile={sshp.known_hosts} root@{n.address}"
            lines.append(f"  {n.name:<10} {n.role:<10} {ssh}   |   virsh console {domain_name(self.spec.cluster, n.name)}")
        lines.append(f"  destroy it: python -m pytest_hpcvalidate destroy {self.spec.cluster}")
        return "\n".join(lines)

    def attach(self):
        path = self.work_dir / STATE_FILE
        if not path.exists():
            raise ProvisioningError(f"no running libvirt cluster {self.spec.cluster!r} (no {path})")
        self.state = State.load(path)
        if not self.state.data.get("ready"):
            raise ProvisioningError(f"libvirt cluster {self.spec.cluster!r} is not ready (state {path})")
        self.domain_type = self.state.data.get("meta", {}).get("domain_type", "qemu")
        self.cluster = self._build_cluster()
        return self.cluster

    # -- down ------------------------------------------------------------------------------------
    def _teardown(self) -> list[str]:
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()
        for p in self._keygen:
            with contextlib.suppress(Exception):
                p.wait(timeout=10)
        if self.state is None:
            return []
        errors = cleanup.teardown(self.state, self.lv.uri)
        if not errors:
            self.state = None
            self.cluster = None
        return errors

    def down(self) -> None:
        start = time.monotonic()
        errors = self._teardown()
        self.timings["down"] = round(time.monotonic() - start, 3)
        if errors:
            raise ProvisioningError(
                f"tearing down libvirt cluster {self.spec.cluster!r} left: {'; '.join(errors)[:1500]}; "
                f"retry: python -m pytest_hpcvalidate cleanup --cluster {self.spec.cluster}")


def guest_ram_mib(memory_mb: int) -> int:
    """RAM for a VM whose Slurm RealMemory is ``memory_mb``: that much plus what the guest's
    kernel keeps for itself (an eighth, at least 64 MiB; measured here: a 512 MiB guest has a
    MemTotal of 470 MiB), so that Slurm's promise holds inside the guest."""
    return memory_mb + max(64, memory_mb // 8)


def _available_mib() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return 0


def _banner(address: str, port: int, connect_timeout: float = 0.5, banner_timeout: float = 10.0) -> bool:
    """True when an SSH server greets on ``address:port`` (a listening socket is not enough:
    the banner proves sshd itself is up). sshd forks and re-executes itself per connection,
    which takes seconds in a TCG guest on a busy host: a short banner wait never succeeds."""
    try:
        with socket.create_connection((address, port), timeout=connect_timeout) as s:
            s.settimeout(banner_timeout)
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


class LibvirtProvider(EngineProvider):
    kind = "libvirt"

    def default_state_root(self) -> Path:
        return STATE_ROOT

    def make_engine(self, model) -> LibvirtCluster:
        if model.monitoring is not None:
            raise ProvisioningError(
                "monitoring: the libvirt provider does not run Prometheus or node exporters in its guests; "
                "use provider local, or attach to a cluster that runs them (provider existing)")
        return LibvirtCluster(model, self.state_root)


__all__ = ["LibvirtCluster", "LibvirtProvider"]
