"""The nodes' own passwd and group files, for the users the config names (``slurm.users``).

Where the config names users, every node binds ``<work_dir>/etc/passwd`` and ``group`` over
its own: the host's entries plus each named user the host does not have, with a uid and gid
free on the host (from :data:`FIRST_ID` on) and a home in the cluster's shared directory. The
host's own files are never written. Pure functions but :func:`make_homes`; the engine writes
the files. The libvirt provider appends the same users to its guests' own files (``guest.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: the files under /etc each node binds from ``<work_dir>/etc`` where the config names users
ACCOUNT_FILES = ("passwd", "group")
#: the first uid/gid given to a user the host does not have
FIRST_ID = 20000


@dataclass(frozen=True)
class MadeUser:
    name: str
    uid: int
    home: Path


def _ids(text: str, field: int) -> set[int]:
    out = set()
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) > field and parts[field].isdigit():
            out.add(int(parts[field]))
    return out


def _names(text: str) -> set[str]:
    return {line.split(":", 1)[0] for line in text.splitlines() if ":" in line}


def render(host_passwd: str, host_group: str, users: list[str], home_root: Path) -> tuple[str, str, list[MadeUser]]:
    """(passwd, group, the users made): the host's files with every user of ``users`` it lacks
    appended (a group of the same name and id each)."""
    taken = _ids(host_passwd, 2) | _ids(host_passwd, 3) | _ids(host_group, 2)
    known, groups = _names(host_passwd), _names(host_group)
    passwd, group = host_passwd.rstrip("\n") + "\n", host_group.rstrip("\n") + "\n"
    made: list[MadeUser] = []
    next_id = FIRST_ID
    for name in dict.fromkeys(users):
        if name in known:
            continue
        while next_id in taken:
            next_id += 1
        taken.add(next_id)
        home = home_root / name
        passwd += f"{name}:x:{next_id}:{next_id}:hpcvalidate test user:{home}:/bin/sh\n"
        if name not in groups:
            group += f"{name}:x:{next_id}:\n"
        made.append(MadeUser(name, next_id, home))
    return passwd, group, made


def make_homes(made: list[MadeUser]) -> None:
    """Each made user's home directory, theirs (uid and gid by number) and mode 0750."""
    for user in made:
        user.home.mkdir(parents=True, exist_ok=True)
        os.chown(user.home, user.uid, user.uid)
        os.chmod(user.home, 0o750)
