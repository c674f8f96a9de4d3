"""Layer 5, coherency: what one node writes, renames and deletes, another node sees - with the
same content, within ``coherency_s_max`` (node pairs of a ring, sampled on large clusters);
one Slurm job writing from every node into one directory leaves every file complete; what a
user's job writes belongs to that user as every node sees it."""

from __future__ import annotations

import secrets
import shlex

import pytest

from pytest_hpcvalidate.probes import slurm, storage, users
from pytest_hpcvalidate.capabilities import not_applicable

from ..conftest import srun_as

pytestmark = pytest.mark.requires("storage")

#: files each node of the many-writers job writes at once, and their size
WRITES_PER_NODE = 2
WRITE_KIB = 1024


def test_write_rename_delete_visible_on_other_node(pair_case, cluster, scratch, metric):
    target, a_name, b_name = pair_case
    a, b = cluster.node(a_name), cluster.node(b_name)
    limit = target.thresholds.coherency_s_max
    base = f"{scratch(target)}/coherency-{a_name}-{b_name}"
    token = secrets.token_hex(8)
    steps = [
        ("a new file", f"printf %s {token} > {shlex.quote(base)}", base, token),
        ("the file renamed", f"mv {shlex.quote(base)} {shlex.quote(base)}.renamed", f"{base}.renamed", token),
        ("the old name gone after the rename", "true", base, storage.ABSENT),
        ("the file deleted", f"rm {shlex.quote(base)}.renamed", f"{base}.renamed", storage.ABSENT),
    ]
    slowest = 0.0
    for what, change, path, want in steps:
        a.run(change, timeout=30).check()
        seen, r = storage.wait_for(b, path, want, limit)
        assert seen is not None, f"{b_name}: could not watch {path}: {r.describe()}"
        shown = "nothing (missing)" if seen.last == storage.ABSENT else repr(seen.last)
        expected = "it gone" if want == storage.ABSENT else f"content {want!r}"
        assert seen.seen, (f"{b_name} does not see {what} written on {a_name} ({path}) within {limit:g} s: "
                           f"it sees {shown}, expected {expected}")
        slowest = max(slowest, seen.seconds)
    m = metric("storage_coherency_s", round(slowest, 4), "s", limit, "<=", node=f"{a_name}->{b_name}:{target.id}")
    assert m.passed, m.message


def test_one_job_writing_from_every_node_leaves_every_file_complete(target, cluster, controller, scratch,
                                                                   partition_of, compute_names, thresholds):
    writers = target.compute_nodes(compute_names)
    if not writers:
        not_applicable(f"no compute node mounts {target.mount_point}: no Slurm job can write to it")
    directory = f"{scratch(target)}/many-writers"
    cluster.node(writers[0]).run(f"mkdir -p {shlex.quote(directory)}", timeout=30).check()
    r = slurm.srun(controller, f"{partition_of(writers)} -w {','.join(writers)} -N{len(writers)} --ntasks-per-node=1",
                   storage.parallel_write_command(directory, WRITE_KIB, WRITES_PER_NODE),
                   timeout=thresholds.job_start_s_max + 60)
    reported = storage.parse_written(r.stdout)
    checker = cluster.node(writers[-1])
    found = storage.parse_sha256sum(checker.run(f"cd {shlex.quote(directory)} && sha256sum -- *.dat", timeout=60).stdout)
    problems = storage.written_problems(reported, found, writers, WRITES_PER_NODE, checker.name)
    if not r.ok:
        problems.append(f"the job failed: {r.describe(800)}")
    assert not problems, f"{len(writers)} nodes writing into {directory}: " + "; ".join(problems)


def test_files_a_users_job_writes_are_theirs_on_every_node(target, cluster, controller, scratch, partition_of,
                                                           compute_names, hpc_config, thresholds):
    """A job of the first user of ``slurm.users`` writes a file from every compute node that
    mounts the filesystem; every node that mounts it sees each file owned by that user's uid and
    gid. A filesystem that maps ids (root or all squash, an NFSv4 idmap domain that differs
    between nodes, a virtio-fs that does not pass ids through) shows them as someone else's."""
    if not hpc_config.slurm.users:
        not_applicable("the config names no users (slurm.users): no job of a user writes here")
    writers = target.compute_nodes(compute_names)
    if not writers:
        not_applicable(f"no compute node mounts {target.mount_point}: no Slurm job can write to it")
    user = hpc_config.slurm.users[0]
    found, r = users.lookup(controller, [user])
    account = found.get(user)
    assert account is not None, f"user {user} unknown on {controller.name} (getent passwd): {r.describe()}"
    directory = f"{scratch(target)}/owned-by-{user}"
    q = shlex.quote(directory)
    cluster.node(writers[0]).run(f"mkdir -p {q} && chmod 1777 {q}", timeout=30).check()
    write = f'echo "$(id -u)" > {q}/"$(hostname)"'
    r = srun_as(controller, user, f"{partition_of(writers)} -w {','.join(writers)} -N{len(writers)} --ntasks-per-node=1",
                write, thresholds.job_start_s_max + 30)
    assert r.ok, f"a job of {user} writing into {directory} from {', '.join(writers)} failed: {r.describe()}"
    seen = cluster.map(lambda n: n.run(f"stat -c '%n %u %g' -- {q}/*", timeout=30), [cluster.node(n) for n in target.nodes])
    problems = []
    for name in target.nodes:
        outcome = seen[name]
        if outcome.error is not None or not outcome.value.ok:
            problems.append(f"{name} cannot list {directory}: {outcome.error or outcome.value.describe()}")
            continue
        owners = {line.rsplit(" ", 2)[0].rsplit("/", 1)[-1]: line.rsplit(" ", 2)[1:]
                  for line in outcome.value.stdout.splitlines() if line.count(" ") >= 2}
        for writer in writers:
            got = owners.get(writer)
            if got is None:
                problems.append(f"{name} does not see the file {user}'s job wrote on {writer}")
            elif got != [str(account.uid), str(account.gid)]:
                problems.append(f"{name} sees the file {user}'s job wrote on {writer} owned by uid {got[0]} gid "
                                f"{got[1]}, not {user}'s uid {account.uid} gid {account.gid}")
    assert not problems, (f"{target.mount_point}: " + "; ".join(problems) + ": the filesystem maps ids (root or all "
                          "squash, an NFSv4 idmap domain that differs between nodes, a virtio-fs without id passthrough)")
