"""The daemons of a node (munged, slurmctld, slurmd, sshd): how each is started, and when it is ready.

Every daemon runs in the foreground (``-F``/``-D``) as a direct child of the provisioning
process, launched through :func:`mountns.enter_argv`, which execs all the way down: the
child's pid *is* the daemon's pid, known (and recorded) the moment it starts, with no pid
file to wait for. Each gets its own session, so a Ctrl-C at the terminal reaches only the
provisioning process, which then tears everything down in order.
"""

from __future__ import annotations

import os
import resource
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from . import mountns
from .cgroups import NodeCgroups
from .keys import SshPaths
from .mountns import NodePaths
from .sshconf import sshd_node_options

#: the environment daemons start with (not the test runner's)
DAEMON_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}


@dataclass
class Daemon:
    node: str
    what: str
    proc: subprocess.Popen
    log: Path
    extra_logs: list[Path] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> int | None:
        return self.proc.poll()

    def log_tail(self, lines: int = 15) -> str:
        chunks = []
        for p in [*self.extra_logs, self.log]:
            try:
                text = p.read_text(errors="replace").strip()
            except OSError:
                continue
            if text:
                chunks.append("\n".join(text.splitlines()[-lines:]))
        return " | ".join(c.replace("\n", " | ") for c in chunks)[-1500:]


def munged_argv(paths: NodePaths) -> list[str]:
    """munged in the foreground logs to stderr: ``<node>/log/munged.out``."""
    return [
        "munged", "-F", "--force",
        f"--key-file={paths.munge_key}",
        f"--socket={MUNGE_SOCKET}",
        f"--pid-file={paths.run / 'munge' / 'munged.pid'}",
        f"--seed-file={paths.munge / 'munged.seed'}",
        "--num-threads=2",
    ]


def slurmctld_argv(conf: Path) -> list[str]:
    return ["slurmctld", "-D", "-c", "-f", str(conf)]


def memlock_prefix() -> list[str]:
    """``prlimit`` raising the locked-memory limit to the hard limit this process may give
    (unlimited where it is; raising the hard limit itself needs CAP_SYS_RESOURCE, which a
    container often lacks). Jobs get slurmd's limit (PropagateResourceLimitsExcept=MEMLOCK), as
    HPC sites configure for MPI over RDMA (systemd's LimitMEMLOCK=infinity)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if soft == hard:
        return []
    value = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
    return ["prlimit", f"--memlock={value}:{value}"]


def slurmd_argv(conf: Path, node: str) -> list[str]:
    return [*memlock_prefix(), "slurmd", "-D", "-N", node, "-f", str(conf)]


def mariadbd_argv(datadir: Path, paths: NodePaths, socket: str) -> list[str]:
    """A small MariaDB for slurmdbd: unix socket only, little memory."""
    return ["mariadbd", "--user=root", f"--datadir={datadir}", f"--socket={socket}", "--skip-networking",
            f"--pid-file={paths.run / 'mariadbd.pid'}", f"--log-error={paths.log / 'mariadb.log'}",
            "--innodb-buffer-pool-size=16M", "--innodb-log-file-size=4M", "--skip-name-resolve"]


def slurmdbd_argv() -> list[str]:
    return ["slurmdbd", "-D"]


def sshd_argv(ssh: SshPaths, address: str, paths: NodePaths) -> list[str]:
    return ["/usr/sbin/sshd", "-D", "-f", str(ssh.sshd_config), "-E", str(paths.log / "sshd.log"),
            *sshd_node_options(address, paths.run / "sshd.pid")]


def launch(node: str, what: str, anchor_pid: int, cg: NodeCgroups, paths: NodePaths, argv: list[str],
           extra_logs: list[Path] | None = None) -> Daemon:
    out = paths.log / f"{what}.out"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        proc = subprocess.Popen(
            mountns.enter_argv(anchor_pid, cg, argv),
            stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
            start_new_session=True, env=DAEMON_ENV, close_fds=True,
        )
    finally:
        os.close(fd)
    return Daemon(node, what, proc, out, list(extra_logs or []))


# -- readiness probes (cheap, no fork) -------------------------------------------------------

def listening(netns_pid: int, port: int) -> bool:
    """A TCP socket in LISTEN state on ``port`` in the network namespace of ``netns_pid``.

    Read from /proc/<pid>/net/tcp (that file shows the namespace of the process), so the
    probe never connects: a bare connect-and-close makes slurmctld log "Zero Bytes were
    transmitted" and sshd log a failed pre-auth connection.
    """
    want = f":{port:04X}"
    try:
        with open(f"/proc/{netns_pid}/net/tcp") as fh:
            next(fh, None)
            for line in fh:
                parts = line.split()
                if len(parts) > 3 and parts[1].endswith(want) and parts[3] == "0A":
                    return True
    except OSError:
        pass
    return False


#: __SO_ACCEPTCON in /proc/net/unix: the socket listens
_UNIX_LISTENING = 0x10000


def unix_listening(netns_pid: int, path: str) -> bool:
    """A unix socket bound to ``path`` listens in the network namespace of ``netns_pid``
    (/proc/<pid>/net/unix; a probe that connects makes munged log an incomplete message)."""
    try:
        with open(f"/proc/{netns_pid}/net/unix") as fh:
            next(fh, None)
            for line in fh:
                parts = line.split()
                if len(parts) >= 8 and parts[-1] == path and int(parts[3], 16) & _UNIX_LISTENING:
                    return True
    except (OSError, ValueError):
        pass
    return False


MUNGE_SOCKET = "/run/munge/munge.socket.2"
