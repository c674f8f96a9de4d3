"""Undoing a libvirt cluster: one teardown for ``destroy()``, a failed ``provision()`` and
``python -m pytest_hpcvalidate cleanup`` after a crash.

The state file (the local provider's :class:`~..local.state.State`, in the cluster's work
directory under :data:`STATE_ROOT`) records every domain and the network before they are
created. Teardown destroys (and undefines, if persistent) each recorded domain, which also
ends its QEMU and virtiofsd processes, then the network (libvirt removes the network's own
firewall rules with it), then the work directory (overlays, per-node initrds, keys, console
logs). The empty ``LIBVIRT_*`` chains stay: they are libvirtd's, made once when it starts,
and a running libvirtd cannot create a network once they are gone. Every step runs even when one
fails; problems come back as one-line strings.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..local import procs
from ..local.cleanup import finish_teardown
from ..local.naming import PREFIX
from ..local.state import STATE_FILE, State, sweep_recorded
from .host import open_connection

STATE_ROOT = Path(os.environ.get("HPCV_LIBVIRT_STATE_ROOT", "/var/lib/hpcvalidate/libvirt"))
GONE_TIMEOUT_S = 10.0


def domain_name(cluster: str, node: str) -> str:
    return f"{PREFIX}-{cluster}-{node}"


def network_name(cluster: str) -> str:
    return f"{PREFIX}-{cluster}"


def _lookup(lookup, name: str):
    import libvirt

    try:
        return lookup(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_NETWORK):
            return None
        raise


def remove_domain(conn, name: str) -> list[str]:
    import libvirt

    dom = _lookup(conn.lookupByName, name)
    if dom is None:
        return []
    try:
        if dom.isActive():
            dom.destroy()
        if dom.isPersistent():
            dom.undefine()
    except libvirt.libvirtError as exc:
        if _lookup(conn.lookupByName, name) is not None:
            return [f"domain {name}: {exc}"]
    return []


def remove_network(conn, name: str) -> list[str]:
    import libvirt

    net = _lookup(conn.networkLookupByName, name)
    if net is None:
        return []
    try:
        if net.isActive():
            net.destroy()
        if net.isPersistent():
            net.undefine()
    except libvirt.libvirtError as exc:
        if _lookup(conn.networkLookupByName, name) is not None:
            return [f"network {name}: {exc}"]
    return []


def _processes_naming(work_dir: Path) -> dict[int, str]:
    return procs.with_cmdline_containing(str(work_dir) + "/")


def teardown(state: State, uri: str | None = None) -> list[str]:
    """Undo everything ``state`` records; returns the problems (empty when all went)."""
    errors: list[str] = []
    uri = uri or state.data.get("meta", {}).get("uri", "qemu:///system")
    domains = [r["name"] for r in state.of_kind("domain")]
    networks = [r["name"] for r in state.of_kind("network")]
    if domains or networks:
        try:
            conn = open_connection(uri)
        except Exception as exc:  # noqa: BLE001 - reported, the file steps still run
            errors.append(f"libvirt at {uri}: {exc}")
        else:
            try:
                # each destroy waits for QEMU to exit (~2 s under TCG): all at once
                with ThreadPoolExecutor(max_workers=max(1, min(16, len(domains)))) as pool:
                    for problems in pool.map(lambda name: remove_domain(conn, name), domains):
                        errors += problems
                for name in networks:
                    errors += remove_network(conn, name)
            finally:
                conn.close()
    # QEMU and virtiofsd end with their domain; wait for them (their files are in the work dir)
    work_dir = state.work_dir
    left = procs.wait_gone(set(_processes_naming(work_dir)), GONE_TIMEOUT_S)
    errors += [f"process still alive: {procs.describe(p)}" for p in sorted(left)]
    return finish_teardown(state, errors)


def leftovers(cluster: str, uri: str = "qemu:///system", state_root: Path | None = None) -> list[str]:
    """Everything of ``cluster`` still on this machine: domains, network, processes, files."""
    import libvirt

    root = state_root or STATE_ROOT
    out: list[str] = []
    prefix = domain_name(cluster, "")
    conn = open_connection(uri)
    try:
        out += [f"domain {d.name()}" for d in conn.listAllDomains() if d.name().startswith(prefix)]
        out += [f"network {n.name()}" for n in conn.listAllNetworks() if n.name() == network_name(cluster)]
    except libvirt.libvirtError as exc:
        out.append(f"libvirt: {exc}")
    finally:
        conn.close()
    wd = root / cluster
    out += [f"process {procs.describe(p)}" for p in _processes_naming(wd)]
    if wd.exists():
        out.append(f"work directory {wd}")
    return out


def _swept(cluster: str, root: Path) -> State:
    """A state naming what a run may have left without recording it (found by name)."""
    import libvirt

    resources: list[dict] = []
    try:
        conn = open_connection("qemu:///system")
    except Exception:  # noqa: BLE001
        conn = None
    if conn is not None:
        try:
            prefix = domain_name(cluster, "")
            resources += [{"kind": "domain", "name": d.name()} for d in conn.listAllDomains()
                          if d.name().startswith(prefix)]
            if any(n.name() == network_name(cluster) for n in conn.listAllNetworks()):
                resources.append({"kind": "network", "name": network_name(cluster)})
        except libvirt.libvirtError:
            pass
        finally:
            conn.close()
    wd = root / cluster
    if wd.exists():
        resources.append({"kind": "workdir", "path": str(wd)})
    return State(wd / STATE_FILE, {"cluster": cluster, "work_dir": str(wd), "resources": resources, "meta": {}})


def cleanup_stale(state_root: Path | None = None, cluster: str | None = None) -> list[str]:
    """Tear down every libvirt cluster recorded under ``state_root`` (or only ``cluster``),
    skipping runs still in progress unless named. Returns the problems."""
    return sweep_recorded(Path(state_root) if state_root is not None else STATE_ROOT, cluster, teardown, _swept)
