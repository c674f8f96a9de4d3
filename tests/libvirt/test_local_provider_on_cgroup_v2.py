"""The local provider's cgroup v2 path for real: a namespace cluster inside a libvirt guest.

This machine is hybrid v1; the lent GPU machine (and current distributions) are v2 only, with
no systemd. The libvirt guests are exactly that (their init mounts cgroup2 only, tini is PID
1), so one TCG VM runs the local provider: this checkout and the Python the venv points at
are shared into the compute VM over virtio-fs (read-only) at the same paths, and over SSH
``pytest tests/libvirt/guest_cgroup_v2_checks.py`` runs there. That module provisions a 1+2
node local cluster (one node with simulated GPUs), checks the provider took the v2 layout,
runs the shipped L2 Slurm, L3 GRES and L3 cgroup suites through the plugin, and turns device
enforcement off to see its checks go red. Afterwards nothing of the inner cluster may be left
in the guest, and nothing of the VMs on this host.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirtkit
import pytest

from pytest_hpcvalidate.config import load_config

ROOT = Path(__file__).resolve().parents[2]
INNER = "tests/libvirt/guest_cgroup_v2_checks.py"
#: the inner run under TCG took ~3.5 min on this 2-core host with nothing else running (pytest's
#: own imports ~40 s of it; 4-5 min at load 1.5-5); the limit leaves room for load, not for a hang
INNER_TIMEOUT_S = 900
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(libvirtkit.skip_reason() is not None, reason=libvirtkit.skip_reason() or "")]

#: the inner module's tests, each of which must have passed (a skip is a failure here)
INNER_TESTS = ("test_the_provider_takes_the_v2_layout", "test_l2_slurm_l3_gres_and_l3_cgroup_suites_pass",
               "test_device_constraint_off_turns_the_gpu_isolation_checks_red")

#: run in the compute VM after the inner run: its cgroup tree, namespaces, links, processes
#: (``KEY=value`` lines; the shell running this is left out of the process list)
GUEST_STATE = r"""
echo "FS=$(stat -fc %T /sys/fs/cgroup)"
echo "PID1=$(cat /proc/1/comm)"
echo "CGROUPS=$(ls /sys/fs/cgroup | tr '\n' ' ')"
echo "NETNS=$(ip netns list 2>/dev/null | tr '\n' ' ')"
echo "LINKS=$(ip -o link | awk -F': ' '{print $2}' | tr '\n' ' ')"
echo "CLUSTERS=$(ls -A /var/lib/hpcvalidate/clusters 2>/dev/null | tr '\n' ' ')"
ps -eo pid=,args= | awk -v me=$$ '$1 != me {$1 = ""; print "PROC=" substr($0, 2)}'
"""


def _shares() -> tuple[list[dict], list[str]]:
    """virtio-fs mounts (read-only, same path in the guest) for this checkout and, unless it is
    the system's, the Python installation the venv was made from; and the guest packages needed
    beyond the base image (none so far)."""
    mounts = [{"tag": "hpcv-checkout", "host_path": str(ROOT), "mount_point": str(ROOT), "options": "ro",
               "cache": "always"}]
    base = Path(sys.base_prefix).resolve()
    if base == Path("/usr") or Path("/usr") in base.parents:
        # Debian 12's python3 in the guest is the one the venv was made from; the base image has it
        # (fio depends on python3), so asking for it would only build a second image variant
        return mounts, []
    mounts.append({"tag": "hpcv-python", "host_path": str(base), "mount_point": str(base), "options": "ro",
                   "cache": "always"})
    return mounts, []


def _leftovers(name: str) -> list[str]:
    from pytest_hpcvalidate.providers.libvirt.cleanup import leftovers

    return leftovers(name)


def _remove(name: str) -> None:
    from pytest_hpcvalidate.providers.libvirt.cleanup import cleanup_stale

    cleanup_stale(cluster=name)


def _junit(path: Path) -> dict[str, str]:
    """{test name: passed | failed | error | skipped} from a JUnit XML report."""
    if not path.is_file():
        return {}
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        out[case.get("name", "")] = {"failure": "failed"}.get(kinds[0], kinds[0]) if kinds else "passed"
    return out


@pytest.fixture(scope="module")
def guest_run(tmp_path_factory):
    """One 1+1 VM cluster; the inner local-provider run on its compute VM; then its teardown."""
    from pytest_hpcvalidate.providers.libvirt import LibvirtCluster

    tmp = tmp_path_factory.mktemp("cgv2")
    mounts, packages = _shares()
    name, doc = libvirtkit.config("cg2")
    # 2 vCPUs and room for a 1+2 node Slurm cluster, pytest and a job over its --mem in the VM
    doc["compute"][0].update(cpus=2, memory_mb=2048, virtio_fs_mounts=mounts)
    doc["libvirt"] = {"boot_timeout_s": 300, **({"guest_packages": packages} if packages else {})}
    path = libvirtkit.write_config(tmp / "cluster.yaml", doc)
    lv = LibvirtCluster(load_config(str(path)))
    out: dict = {"name": name}
    start = time.monotonic()
    try:
        cluster = lv.up()
        out["up_s"] = time.monotonic() - start
        c1 = cluster.node("c1")
        shared = Path(cluster.shared_dir)  # the host's path, mounted at that path in the guest
        evidence, junit = shared / "v2-evidence.json", shared / "inner-junit.xml"
        command = (f"cd {shlex.quote(str(ROOT))} && HPCV_V2_EVIDENCE={shlex.quote(str(evidence))} "
                   "HYPOTHESIS_STORAGE_DIRECTORY=/tmp/hpcv-hypothesis "
                   f"timeout {INNER_TIMEOUT_S} .venv/bin/python -m pytest -p no:cacheprovider -v -rfEs "
                   f"--junitxml={shlex.quote(str(junit))} {INNER} < /dev/null")
        t = time.monotonic()
        out["inner"] = c1.run(command, timeout=INNER_TIMEOUT_S + 60)
        out["inner_s"] = time.monotonic() - t
        out["junit"] = _junit(junit)
        out["evidence"] = json.loads(evidence.read_text()) if evidence.is_file() else {}
        out["guest"] = c1.run(GUEST_STATE, timeout=120)
    finally:
        try:
            lv.down()
        finally:
            out["left"] = _leftovers(name)
            _remove(name)
            out["total_s"] = time.monotonic() - start
            # shown with the captured output of a failing test (or with -s): where the minutes went
            print(f"cgroup-v2 guest run: VMs up {out.get('up_s', 0):.0f} s, inner run {out.get('inner_s', 0):.0f} s, "
                  f"{out['total_s']:.0f} s in all")
    return out


def _guest(guest_run, key: str) -> list[str]:
    """The values of ``key`` in :data:`GUEST_STATE`'s output, one per line."""
    r = guest_run["guest"]
    assert r.ok, r.describe()
    return [line.partition("=")[2].strip() for line in r.stdout.splitlines() if line.partition("=")[0] == key]


def test_the_guest_is_cgroup_v2_only_without_systemd(guest_run):
    assert _guest(guest_run, "FS") == ["cgroup2fs"]
    assert _guest(guest_run, "PID1") == ["tini"]
    (tree,) = _guest(guest_run, "CGROUPS")
    assert "cgroup.controllers" in tree.split() and "memory" not in tree.split()  # no v1 hierarchy beside it


def test_local_provider_passes_l2_l3_and_faults_go_red_on_cgroup_v2(guest_run):
    inner = guest_run["inner"]
    report = f"{inner.stdout[-5000:]}\n{inner.stderr[-2000:]}"
    assert {t: guest_run["junit"].get(t, "not run") for t in INNER_TESTS} == {t: "passed" for t in INNER_TESTS}, report
    assert inner.exit_code == 0, report


def test_the_provider_chose_the_v2_layout(guest_run):
    """Re-checked from what the inner run recorded while its cluster was up."""
    ev = guest_run["evidence"]
    assert ev, "the inner run recorded no evidence: " + guest_run["inner"].stdout[-3000:]
    assert ev["layout"] == "v2"
    assert "CgroupPlugin=cgroup/v2" in ev["cgroup_conf"] and "CgroupPlugin=cgroup/v1" not in ev["cgroup_conf"]
    assert ev["subtrees"] == sorted(f"hpcv-{ev['cluster']}-{n}" for n in ("c1", "ctl", "g1"))
    for node in ("g1", "c1"):
        (path,) = ev["slurmd_cgroups"][node]
        assert path.startswith(f"0::/hpcv-{ev['cluster']}-{node}/"), ev["slurmd_cgroups"]


def test_nothing_of_the_inner_cluster_is_left_in_the_guest(guest_run):
    cluster = guest_run["evidence"].get("cluster") or "hpcv-"
    (tree,) = _guest(guest_run, "CGROUPS")
    assert [c for c in tree.split() if c.startswith("hpcv-")] == []
    assert _guest(guest_run, "NETNS") == [""]
    (links,) = _guest(guest_run, "LINKS")
    assert [link for link in links.split() if link.split("@")[0] not in ("lo", "eth0")] == []
    assert _guest(guest_run, "CLUSTERS") == [""]
    procs = _guest(guest_run, "PROC")
    assert len(procs) > 3, procs  # tini, the guest init, sshd, ... were listed
    assert [p for p in procs if "/var/lib/hpcvalidate/clusters" in p or cluster in p] == [], procs
    # the VM's own Slurm daemons only (the guest init starts munged and slurmd -N c1): no
    # slurmd, slurmctld, slurmstepd or munged of the inner cluster
    slurm = sorted(p for p in procs if "slurm" in p or "munge" in p)
    assert slurm == ["/usr/sbin/munged", "/usr/sbin/slurmd -N c1"], procs


def test_nothing_of_the_libvirt_cluster_is_left(guest_run):
    assert guest_run["left"] == [], f"after the run: {guest_run['left']}"

