"""Shared-storage facts: mounts, free space, fio results, metadata rates, and server health as
the filesystem's own tools report it (GlusterFS ``gluster … --xml``; BeeGFS ``beegfs-ctl``,
``beegfs-df``, ``beegfs-check-servers``).

Parsers are pure functions of the text a tool printed (tested against ``fixtures/storage``
and ``fixtures/beegfs``); the functions taking a ``node`` run the command there. The
``*_problems`` functions turn parsed facts into one operator-readable line per problem, each
naming the node and the brick/target, so suites and unit tests judge with the same code.
"""

from __future__ import annotations

import json
import re
import shlex
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from ..transport import CommandResult

#: filesystem kind (config ``storage[].kind``) -> the fstypes its mounts show in /proc/mounts
FSTYPES: dict[str, tuple[str, ...]] = {
    "glusterfs": ("fuse.glusterfs",),
    "beegfs": ("beegfs",),
    "nfs": ("nfs", "nfs4"),
    "lustre": ("lustre",),
    "virtiofs": ("virtiofs",),
    "generic": (),  # any filesystem
}

MIB = 1024 * 1024
GIB = 1024 * MIB


# ----------------------------------------------------------------------------- mounts
@dataclass(frozen=True)
class MountEntry:
    source: str
    target: str
    fstype: str
    options: tuple[str, ...]

    @property
    def read_write(self) -> bool:
        return "rw" in self.options and "ro" not in self.options


def _unescape(field_: str) -> str:
    """/proc/mounts escapes space, tab, newline and backslash as octal (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field_)


def parse_mounts(text: str) -> list[MountEntry]:
    """``/proc/mounts`` (or ``/proc/self/mounts``) lines → entries, in mount order."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            out.append(MountEntry(_unescape(parts[0]), _unescape(parts[1]), parts[2], tuple(parts[3].split(","))))
    return out


def mount_at(mounts: list[MountEntry], target: str) -> MountEntry | None:
    """The mount visible at ``target``: the last one mounted there (it hides earlier ones)."""
    target = target.rstrip("/") or "/"
    found = [m for m in mounts if m.target == target]
    return found[-1] if found else None


def mount_problems(node: str, entry: MountEntry | None, mount_point: str, kind: str,
                   source: str | None) -> list[str]:
    """What is wrong with the mount at ``mount_point`` on ``node`` (empty: nothing)."""
    if entry is None:
        return [f"{node}: nothing is mounted at {mount_point} (expected {kind})"]
    problems = []
    want = FSTYPES.get(kind, ())
    if want and entry.fstype not in want:
        problems.append(f"{node}: {mount_point} is {entry.fstype} from {entry.source}, expected {'/'.join(want)}")
    if source and entry.source != source:
        problems.append(f"{node}: {mount_point} is mounted from {entry.source}, the config says {source}")
    if not entry.read_write:
        problems.append(f"{node}: {mount_point} is mounted read-only ({','.join(entry.options)})")
    return problems


def mounts(node) -> list[MountEntry]:
    return parse_mounts(node.run("cat /proc/self/mounts", timeout=20).check().stdout)


# ----------------------------------------------------------------------------- df
@dataclass(frozen=True)
class DiskSpace:
    total_bytes: int
    used_bytes: int
    avail_bytes: int
    mounted_on: str

    @property
    def avail_gib(self) -> float:
        return self.avail_bytes / GIB


def parse_df(text: str) -> DiskSpace | None:
    """``df -P -B1 PATH`` → the space of the filesystem holding PATH (None if unparsable)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) < 2:
        return None
    parts = lines[-1].split()
    if len(parts) < 6 or not all(p.isdigit() for p in parts[-5:-2]):
        return None
    return DiskSpace(int(parts[-5]), int(parts[-4]), int(parts[-3]), parts[-1])


def disk_space(node, path: str) -> tuple[DiskSpace | None, CommandResult]:
    r = node.run(f"df -P -B1 {shlex.quote(path)}", timeout=30)
    return (parse_df(r.stdout) if r.ok else None), r


# ----------------------------------------------------------------------------- fio
@dataclass(frozen=True)
class FioJob:
    name: str
    error: int
    read_bytes: int
    write_bytes: int
    read_bw_bytes: float   # bytes/s
    write_bw_bytes: float
    read_iops: float
    write_iops: float
    runtime_ms: int
    #: when fio wrote its report (ms since the epoch): the job ended about then
    end_ms: int

    @property
    def read_mibps(self) -> float:
        return self.read_bw_bytes / MIB

    @property
    def write_mibps(self) -> float:
        return self.write_bw_bytes / MIB


def _fio_side(job: dict, side: str) -> tuple[int, float, float]:
    d = job.get(side) or {}
    bw = d.get("bw_bytes")
    if bw is None:  # fio before 3.4 has only "bw", KiB/s
        bw = float(d.get("bw", 0)) * 1024
    return int(d.get("io_bytes", 0)), float(bw), float(d.get("iops", 0.0))


def parse_fio(text: str) -> list[FioJob]:
    """``fio --output-format=json`` → one FioJob per job. Lines fio prints before the JSON
    (warnings such as "fio: …") are skipped. Raises ValueError when there is no JSON."""
    start = text.find("{")
    if start < 0:
        raise ValueError(f"no fio JSON in output: {text.strip()[:200]!r}")
    doc, _ = json.JSONDecoder().raw_decode(text[start:])
    end_ms = int(doc.get("timestamp_ms", 0))
    out = []
    for job in doc.get("jobs", []):
        rb, rbw, riops = _fio_side(job, "read")
        wb, wbw, wiops = _fio_side(job, "write")
        out.append(FioJob(job.get("jobname", "?"), int(job.get("error", 0)), rb, wb, rbw, wbw, riops, wiops,
                          int(job.get("job_runtime", 0)), end_ms))
    return out


def parse_fio_or_empty(text: str) -> list[FioJob]:
    """The jobs of a fio JSON report that ended without error; [] when there is no report."""
    try:
        return [j for j in parse_fio(text) if j.error == 0]
    except ValueError:
        return []


def aggregate_mibps(jobs: list[FioJob], side: str) -> float:
    """Total bytes moved by jobs that ran at the same time over the span from the first start
    to the last end: what the filesystem delivered to all of them together, in MiB/s."""
    if not jobs:
        return 0.0
    total = sum(j.read_bytes if side == "read" else j.write_bytes for j in jobs)
    start = min(j.end_ms - j.runtime_ms for j in jobs)
    end = max(j.end_ms for j in jobs)
    span_s = max(end - start, 1) / 1000
    return total / MIB / span_s


#: fio workloads of the throughput checks: name -> fio job options
FIO_WORKLOADS: dict[str, str] = {
    "seq_write": "--rw=write --bs=1M --end_fsync=1",
    "seq_read": "--rw=read --bs=1M",
    "rand_read": "--rw=randread --bs=4k --time_based",
}


def _dq(text: str) -> str:
    """Double-quoted for the shell: ``$(hostname)`` in a path still expands on the node."""
    return '"' + re.sub(r'(["\\`])', r"\\\1", text) + '"'


def fio_command(path: str, workloads: list[str], size_mib: int, runtime_s: float, direct: bool = True,
                output: str | None = None) -> str:
    """One fio run of ``workloads`` one after the other (``--stonewall``) on file ``path``,
    JSON report (to ``output`` when given). One process for all of them: fio's start-up on a
    network filesystem costs more than a short job. Both paths may use ``$(hostname)``."""
    jobs = []
    for i, w in enumerate(workloads):
        opts = FIO_WORKLOADS[w]
        if "time_based" in opts:
            opts += f" --runtime={max(1, int(round(runtime_s)))}"
        jobs.append(f"--name={w}{' --stonewall' if i else ''} {opts}")
    out = f" --output={_dq(output)}" if output else ""
    return (f"fio --filename={_dq(path)} --size={int(size_mib)}M --direct={int(direct)} --ioengine=psync "
            f"--output-format=json{out} " + " ".join(jobs))


def run_fio(node, path: str, workloads: list[str], size_mib: int, runtime_s: float, direct: bool = True,
            timeout: float = 300.0) -> tuple[dict[str, FioJob], CommandResult]:
    """{workload: its job} of the workloads that completed without error, and the command's result."""
    r = node.run(fio_command(path, workloads, size_mib, runtime_s, direct), timeout=timeout)
    jobs = parse_fio_or_empty(r.stdout) if r.ok else []
    return {j.name: j for j in jobs}, r


# ----------------------------------------------------------------------------- metadata
@dataclass(frozen=True)
class MetadataRate:
    files: int
    create_s: float
    stat_s: float
    unlink_s: float

    @property
    def ops_per_s(self) -> float:
        """create + stat + unlink of every file, per second of the three phases together."""
        total = self.create_s + self.stat_s + self.unlink_s
        return 3 * self.files / total if total > 0 else 0.0


_META = re.compile(r"HPCV_META files=(\d+) create_ns=(\d+) stat_ns=(\d+) unlink_ns=(\d+) left=(\d+)")


def metadata_command(directory: str, files: int) -> str:
    """Create, stat and remove ``files`` empty files in ``directory``: one process per phase
    (touch, stat, rm), so the rate is the filesystem's, not the shell's fork rate."""
    d = shlex.quote(directory)
    return (
        f"mkdir -p {d} && cd {d} && f=$(seq -f 'm%g' 1 {int(files)}) && "
        "t0=$(date +%s%N) && touch $f && t1=$(date +%s%N) && stat $f >/dev/null && t2=$(date +%s%N) && "
        "rm -f $f && t3=$(date +%s%N) && "
        f'echo "HPCV_META files={int(files)} create_ns=$((t1-t0)) stat_ns=$((t2-t1)) unlink_ns=$((t3-t2)) '
        'left=$(ls -A | wc -l)"'
    )


def parse_metadata(text: str) -> MetadataRate | None:
    m = _META.search(text)
    if not m or int(m.group(5)) != 0:
        return None
    n, c, s, u = (int(g) for g in m.groups()[:4])
    return MetadataRate(n, c / 1e9, s / 1e9, u / 1e9)


# ----------------------------------------------------------------------------- GlusterFS
@dataclass(frozen=True)
class GlusterPeer:
    hostname: str
    uuid: str
    connected: bool
    state: str


@dataclass(frozen=True)
class GlusterBrick:
    volume: str
    host: str
    path: str
    online: bool
    pid: int | None
    port: str
    #: from ``volume status … detail``: the brick filesystem's size and free bytes
    size_total: int | None = None
    size_free: int | None = None

    @property
    def name(self) -> str:
        return f"{self.host}:{self.path}"


class GlusterError(ValueError):
    """The gluster CLI reported a failure in its XML (opRet != 0)."""


def _cli_output(text: str) -> ET.Element:
    start = text.find("<?xml")
    if start < 0:
        start = text.find("<cliOutput")
    if start < 0:
        raise GlusterError(f"no gluster XML in output: {text.strip()[:200]!r}")
    root = ET.fromstring(text[start:].strip())
    if (root.findtext("opRet") or "0").strip() != "0":
        raise GlusterError((root.findtext("opErrstr") or "").strip() or f"opRet {root.findtext('opRet')}")
    return root


def parse_peer_status(text: str) -> list[GlusterPeer]:
    """``gluster peer status --xml`` → the peers of the node asked (it does not list itself)."""
    root = _cli_output(text)
    return [
        GlusterPeer(p.findtext("hostname", "").strip(), p.findtext("uuid", "").strip(),
                    p.findtext("connected", "0").strip() == "1", p.findtext("stateStr", "").strip())
        for p in root.iter("peer")
    ]


def _int_or_none(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.lstrip("-").isdigit() and int(text) >= 0 else None


def parse_volume_status(text: str) -> list[GlusterBrick]:
    """``gluster volume status <vol|all> [detail] --xml`` → the bricks (self-heal daemons and
    the like, listed as nodes whose path is not a directory, are left out)."""
    root = _cli_output(text)
    out = []
    for vol in root.iter("volume"):
        name = vol.findtext("volName", "").strip()
        for n in vol.findall("node"):
            path = n.findtext("path", "").strip()
            if not path.startswith("/"):
                continue
            out.append(GlusterBrick(name, n.findtext("hostname", "").strip(), path,
                                    n.findtext("status", "0").strip() == "1",
                                    _int_or_none(n.findtext("pid")) or None, n.findtext("port", "").strip(),
                                    _int_or_none(n.findtext("sizeTotal")), _int_or_none(n.findtext("sizeFree"))))
    return out


def gluster_problems(asked: str, peers: list[GlusterPeer], bricks: list[GlusterBrick],
                     volume: str | None = None, expected_hosts: list[str] | None = None,
                     free_gib_min: float = 0.0) -> list[str]:
    """Peers not connected, bricks offline or with less than ``free_gib_min`` free (files are
    placed on bricks by name hash: one full brick fails writes while the volume has room),
    expected brick hosts without a brick; ``asked`` is the node whose view this is."""
    problems = [f"peer {p.hostname} is not connected to {asked} (state: {p.state or '?'})"
                for p in peers if not p.connected]
    mine = [b for b in bricks if volume is None or b.volume == volume]
    if volume is not None and not mine:
        problems.append(f"volume {volume} has no bricks (is it started?)")
    problems += [f"brick {b.name} of volume {b.volume} on {b.host} is offline" for b in mine if not b.online]
    problems += [f"brick {b.name} of volume {b.volume} on {b.host} has {b.size_free / GIB:.2f} GiB free of "
                 f"{(b.size_total or 0) / GIB:.2f} GiB; the minimum is {free_gib_min:g} GiB"
                 for b in mine if b.online and b.size_free is not None and b.size_free < free_gib_min * GIB]
    for host in expected_hosts or []:
        if mine and not any(b.host == host for b in mine):
            problems.append(f"{host} serves no brick of volume {volume or mine[0].volume}")
    return problems


def gluster(node, args: str, timeout: float = 30.0) -> CommandResult:
    return node.run(f"gluster --mode=script {args}", timeout=timeout, root=True)  # glusterd answers root only


def gluster_health(node, volume: str | None = None, expected_hosts: list[str] | None = None,
                   free_gib_min: float = 0.0) -> tuple[list[str], list[GlusterBrick]]:
    """(problems, bricks) of ``volume`` (every volume when None) as ``node``'s glusterd sees it."""
    peers_r = gluster(node, "peer status --xml")
    vol_r = gluster(node, f"volume status {shlex.quote(volume) if volume else 'all'} detail --xml")
    problems: list[str] = []
    peers: list[GlusterPeer] = []
    bricks: list[GlusterBrick] = []
    for r, parse, into in ((peers_r, parse_peer_status, peers), (vol_r, parse_volume_status, bricks)):
        try:
            into.extend(parse(r.stdout))
        except (GlusterError, ET.ParseError) as exc:
            problems.append(f"`{r.command}` on {node.name} failed: {exc or r.describe()}")
    return problems + gluster_problems(node.name, peers, bricks, volume, expected_hosts, free_gib_min), bricks


# ----------------------------------------------------------------------------- BeeGFS
@dataclass(frozen=True)
class BeegfsNode:
    name: str
    num_id: int
    reachable: bool | None = None   # None: not asked (--reachable not given)


@dataclass(frozen=True)
class BeegfsTarget:
    target_id: int
    reachability: str   # Online, Probably-offline, Offline
    consistency: str    # Good, Needs-resync, resyncing, Bad
    node: str           # the node name ("" when the output hides it)
    node_id: int | None


@dataclass(frozen=True)
class BeegfsSpace:
    target_id: int
    pool: str           # normal, low, emergency
    total_gib: float
    free_gib: float
    free_pct: float
    inodes_free_pct: float


_TYPED_ID = re.compile(r"^(?:beegfs-\w+\s+)?(?P<name>\S+) \[ID: (?P<id>\d+)\]$")


def parse_listnodes(text: str) -> list[BeegfsNode]:
    """``beegfs-ctl --listnodes --nodetype=T [--reachable]``: ``name [ID: n]`` lines, each
    optionally followed by indented detail lines (``Reachable: <yes>``)."""
    out: list[BeegfsNode] = []
    for line in text.splitlines():
        m = _TYPED_ID.match(line.strip()) if line and not line[0].isspace() else None
        if m:
            out.append(BeegfsNode(m.group("name"), int(m.group("id"))))
        elif out and line.strip().startswith("Reachable:"):
            last = out[-1]
            out[-1] = BeegfsNode(last.name, last.num_id, "<yes>" in line)
    return out


def parse_listtargets(text: str) -> list[BeegfsTarget]:
    """``beegfs-ctl --listtargets --nodetype=T --state --longnodes``: ``TargetID Reachability
    Consistency NodeID`` columns (NodeID long: ``beegfs-storage c1 [ID: 1]``, or numeric)."""
    out = []
    for line in text.splitlines():
        parts = line.split(None, 3)
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        node, node_id = "", None
        if len(parts) == 4:
            m = _TYPED_ID.match(parts[3].strip())
            if m:
                node, node_id = m.group("name"), int(m.group("id"))
            elif parts[3].strip().isdigit():
                node_id = int(parts[3].strip())
        out.append(BeegfsTarget(int(parts[0]), parts[1], parts[2], node, node_id))
    return out


_DF_LINE = re.compile(
    r"^\s*(\d+)\s+(\w+)\s+([\d.]+)GiB\s+([\d.]+)GiB\s+(\d+)%\s+([\d.]+)M\s+([\d.]+)M\s+(\d+)%\s*$")


def parse_beegfs_df(text: str) -> dict[str, list[BeegfsSpace]]:
    """``beegfs-df`` → {"meta": [...], "storage": [...]} (its two sections)."""
    out: dict[str, list[BeegfsSpace]] = {"meta": [], "storage": []}
    section = None
    for line in text.splitlines():
        if line.startswith("METADATA SERVERS"):
            section = "meta"
        elif line.startswith("STORAGE TARGETS"):
            section = "storage"
        elif section and (m := _DF_LINE.match(line)):
            out[section].append(BeegfsSpace(int(m.group(1)), m.group(2), float(m.group(3)), float(m.group(4)),
                                            float(m.group(5)), float(m.group(8))))
    return out


_CHECK_LINE = re.compile(r"^(?P<name>\S+) \[ID: (?P<id>\d+)\]: (?P<verdict>reachable at .*|UNREACHABLE)$")


def parse_check_servers(text: str) -> dict[str, list[BeegfsNode]]:
    """``beegfs-check-servers`` → {"Management"|"Metadata"|"Storage": [nodes with reachable set]}."""
    out: dict[str, list[BeegfsNode]] = {}
    section = None
    for line in text.splitlines():
        s = line.strip()
        if s in ("Management", "Metadata", "Storage"):
            section = s
            out[section] = []
        elif section and (m := _CHECK_LINE.match(s)):
            out[section].append(BeegfsNode(m.group("name"), int(m.group("id")), m.group("verdict") != "UNREACHABLE"))
    return out


@dataclass
class BeegfsReport:
    """Everything the BeeGFS health check reads, parsed; ``missing`` names outputs not obtained."""

    nodes: dict[str, list[BeegfsNode]] = field(default_factory=dict)        # mgmt/meta/storage
    targets: dict[str, list[BeegfsTarget]] = field(default_factory=dict)    # meta/storage
    space: dict[str, list[BeegfsSpace]] = field(default_factory=dict)       # meta/storage
    servers: dict[str, list[BeegfsNode]] = field(default_factory=dict)      # check-servers sections
    missing: list[str] = field(default_factory=list)


#: beegfs-ctl node types and the beegfs-check-servers section of each
BEEGFS_TYPES = {"mgmt": "Management", "meta": "Metadata", "storage": "Storage"}


def beegfs_problems(report: BeegfsReport, management: str, metadata: list[str], storage: list[str],
                    free_gib_min: float) -> list[str]:
    """Every way the BeeGFS report falls short of the configured layout, one line each, naming
    the node and target: a service missing or unreachable, a target not Online/Good, a target
    (or metadata server) with less free space than ``free_gib_min`` or in the emergency pool."""
    problems = [f"could not read {what}" for what in report.missing]
    expected = {"mgmt": [management], "meta": metadata, "storage": storage}
    for kind, names in expected.items():
        listed = {n.name: n for n in report.nodes.get(kind, [])}
        if kind in report.nodes:
            problems += [f"{name}: no {kind} service registered with the management service"
                         for name in names if name not in listed]
        problems += [f"{n.name}: {kind} service [ID: {n.num_id}] is not reachable"
                     for n in listed.values() if n.reachable is False]
        for n in report.servers.get(BEEGFS_TYPES[kind], []):
            if not n.reachable and not (n.name in listed and listed[n.name].reachable is False):
                problems.append(f"{n.name}: {kind} service [ID: {n.num_id}] is UNREACHABLE (beegfs-check-servers)")
    for kind, targets in report.targets.items():
        for t in targets:
            where = t.node or (f"node ID {t.node_id}" if t.node_id is not None else "unknown node")
            if t.reachability != "Online":
                problems.append(f"{where}: {kind} target {t.target_id} is {t.reachability}")
            if t.consistency != "Good":
                problems.append(f"{where}: {kind} target {t.target_id} is {t.consistency} (consistency)")
    owners = {(k, t.target_id): t.node for k, ts in report.targets.items() for t in ts}
    for kind, spaces in report.space.items():
        for s in spaces:
            owner = owners.get((kind, s.target_id)) or "?"
            if s.free_gib < free_gib_min or s.pool == "emergency":
                problems.append(f"{owner}: {kind} target {s.target_id} has {s.free_gib:.1f} GiB free of "
                                f"{s.total_gib:.1f} ({s.free_pct:.0f}%, pool {s.pool}); the minimum is {free_gib_min:g} GiB")
    return problems


def beegfs_report(node, mount_point: str | None = None) -> BeegfsReport:
    """Run BeeGFS's own tools on ``node`` (a client or server with beegfs-ctl) and parse them
    (as root: they read the client config and connAuthFile, which are root's)."""
    mount = f" --mount={shlex.quote(mount_point)}" if mount_point else ""
    rep = BeegfsReport()
    for kind in BEEGFS_TYPES:
        r = node.run(f"beegfs-ctl --listnodes --nodetype={kind} --reachable{mount}", timeout=60, root=True)
        if r.ok:
            rep.nodes[kind] = parse_listnodes(r.stdout)
        else:
            rep.missing.append(f"{kind} nodes ({r.describe()})")
    for kind in ("meta", "storage"):
        r = node.run(f"beegfs-ctl --listtargets --nodetype={kind} --state --longnodes{mount}", timeout=60, root=True)
        if r.ok:
            rep.targets[kind] = parse_listtargets(r.stdout)
        else:
            rep.missing.append(f"{kind} targets ({r.describe()})")
    r = node.run("beegfs-df" + (f" -p {shlex.quote(mount_point)}" if mount_point else ""), timeout=60, root=True)
    if r.ok:
        rep.space = parse_beegfs_df(r.stdout)
    else:
        rep.missing.append(f"beegfs-df ({r.describe()})")
    r = node.run("beegfs-check-servers" + (f" -p {shlex.quote(mount_point)}" if mount_point else ""), timeout=60, root=True)
    if r.ok:
        rep.servers = parse_check_servers(r.stdout)
    else:
        rep.missing.append(f"beegfs-check-servers ({r.describe()})")
    return rep


# ----------------------------------------------------------------------------- coherency
ABSENT = "__hpcv_absent__"


@dataclass(frozen=True)
class Visibility:
    """What a node saw while waiting for a path to show ``want`` (content, or ABSENT)."""

    seen: bool
    seconds: float
    last: str   # what the node saw last (content, or ABSENT)


_SEEN = re.compile(r"HPCV_SEEN (ok|timeout) ns=(\d+) got=(.*)$", re.M)


def wait_for_command(path: str, want: str, timeout_s: float, poll_s: float = 0.02) -> str:
    """Poll ``path`` on the node until its content is ``want`` (or it is gone, for ABSENT);
    prints how long that took, measured on the node itself."""
    p, w = shlex.quote(path), shlex.quote(want)
    limit = int(timeout_s * 1e9)
    return (
        f"p={p}; w={w}; t0=$(date +%s%N); while :; do "
        f'if [ -e "$p" ]; then g=$(head -c 200 "$p" 2>/dev/null | tr -d "\\n"); else g={ABSENT}; fi; '
        'n=$(date +%s%N); [ "$g" = "$w" ] && { echo "HPCV_SEEN ok ns=$((n-t0)) got=$g"; break; }; '
        f'[ $((n-t0)) -ge {limit} ] && {{ echo "HPCV_SEEN timeout ns=$((n-t0)) got=$g"; break; }}; '
        f"sleep {poll_s}; done"
    )


def parse_visibility(text: str) -> Visibility | None:
    m = _SEEN.search(text)
    if not m:
        return None
    return Visibility(m.group(1) == "ok", int(m.group(2)) / 1e9, m.group(3))


def wait_for(node, path: str, want: str, timeout_s: float) -> tuple[Visibility | None, CommandResult]:
    r = node.run(wait_for_command(path, want, timeout_s), timeout=timeout_s + 30)
    return parse_visibility(r.stdout), r


# ----------------------------------------------------------------------------- many writers
_WROTE = re.compile(r"^HPCV_WROTE (\S+) ([0-9a-f]{64}) (\d+)$", re.M)


def parallel_write_command(directory: str, size_kib: int, files: int = 1) -> str:
    """What each task of the many-writers job runs: ``files`` writers at once, each writing
    ``size_kib`` of random data to ``<directory>/<host>-<task>.<i>.dat`` and reporting its
    name, sha256 and size as written."""
    d = shlex.quote(directory)
    one = (
        'f="$(hostname)-${SLURM_PROCID:-0}.$i.dat"; t="/tmp/hpcv-$$-$i.dat"; '
        f"head -c {int(size_kib)}K /dev/urandom > \"$t\" && s=$(sha256sum < \"$t\" | cut -d' ' -f1) && "
        f'cp "$t" {d}/"$f" && rm -f "$t" && echo "HPCV_WROTE $f $s $(stat -c %s {d}/"$f")"'
    )
    return f"for i in $(seq 1 {int(files)}); do ( {one} ) & done; wait"


def parse_written(text: str) -> dict[str, tuple[str, int]]:
    """HPCV_WROTE lines → {file name: (sha256, size)}."""
    return {m.group(1): (m.group(2), int(m.group(3))) for m in _WROTE.finditer(text)}


def parse_sha256sum(text: str) -> dict[str, str]:
    """``sha256sum FILES`` output → {file name: sha256} (``*`` binary marker dropped)."""
    out = {}
    for line in text.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and re.fullmatch(r"[0-9a-f]{64}", parts[0]):
            out[parts[1].lstrip("*").rsplit("/", 1)[-1]] = parts[0]
    return out


def written_problems(reported: dict[str, tuple[str, int]], found: dict[str, str], writers: list[str],
                     per_writer: int, checker: str) -> list[str]:
    """Files each writer reported vs what ``checker`` reads back: missing, different, absent writers."""
    problems = []
    for host in writers:
        mine = [f for f in reported if f.rsplit("-", 1)[0] == host]
        if len(mine) < per_writer:
            problems.append(f"{host}: {per_writer - len(mine)} of its {per_writer} writes did not complete")
    for name, (sha, _size) in sorted(reported.items()):
        host = name.rsplit("-", 1)[0]  # <host>-<task>.<i>.dat
        if name not in found:
            problems.append(f"{host}: wrote {name}, but {checker} does not see it")
        elif found[name] != sha:
            problems.append(f"{host}: {name} reads back on {checker} with different content (incomplete write?)")
    return problems
