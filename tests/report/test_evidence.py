"""The commands a check runs, as Allure steps: node, command, exit code, duration; stdout and
stderr attached when the check fails (or with --hpc-attach-output); secrets never attached.

The dummy suites reach their "nodes" with the real local transport (real commands on this
machine), through the same ``Node.run`` every shipped suite uses.
"""

from __future__ import annotations

import base64
import json
import os

from reportkit import results, run, write_suites

CONFTEST = """
import pytest
from pytest_hpcvalidate.cluster import Cluster, Node
from pytest_hpcvalidate.transport.local import LocalTransport

@pytest.fixture(scope="session")
def cluster():
    # the config's nodes, each one reached as this machine
    return Cluster("t", "local", [Node(n, "compute", "127.0.0.1", LocalTransport(n)) for n in ("ctl", "c1", "c2")])
"""

CHECKS = """
def test_passes(cluster):
    cluster.node("c1").run("echo out-c1; echo err-c1 >&2")

def test_fails(cluster, metric):
    cluster.run_all(lambda n: f"sleep 0.05; echo from-{n.name}")  # three nodes at once, from threads
    metric("x_s", 1, "s", 2, "<=", node="c2")
    r = cluster.node("c2").run("echo looked-at-c2; exit 3")
    assert r.ok, r.describe()
"""


def steps(doc: dict) -> list[dict]:
    return doc.get("steps", [])


def attachments(out, step: dict) -> dict[str, str]:
    return {a["name"]: (out / "allure-results" / a["source"]).read_text() for a in step.get("attachments", [])}


def params(step: dict) -> dict[str, str]:
    return {p["name"]: p["value"] for p in step.get("parameters", [])}


def test_commands_become_steps_in_order_with_output_attached_only_when_the_check_fails(pytester):
    cfg = write_suites(pytester, {"suites/conftest.py": CONFTEST, "suites/l1_network/test_cmds.py": CHECKS})
    result, out = run(pytester, cfg)
    result.assert_outcomes(passed=1, failed=1)
    docs = results(out)

    passed = steps(docs["test_passes"])
    assert [s["name"].split(" in ")[0] for s in passed] == ["c1: `echo out-c1; echo err-c1 >&2` → exit 0"]
    assert params(passed[0]) == {"node": "c1", "command": "echo out-c1; echo err-c1 >&2", "exit code": "0",
                                 "duration": params(passed[0])["duration"]}
    duration_ms = float(params(passed[0])["duration"].rstrip("s")) * 1000
    assert abs((passed[0]["stop"] - passed[0]["start"]) - duration_ms) <= 2  # the command's real times
    assert attachments(out, passed[0]) == {}  # a passing check: no output attached
    assert not any("@@kernel" in s["name"] for d in docs.values() for s in steps(d))  # fingerprint reads are not evidence

    failed = steps(docs["test_fails"])
    names = [s["name"] for s in failed]
    assert sorted(n.split(":")[0] for n in names[:3]) == ["c1", "c2", "ctl"]  # the concurrent run_all
    assert names[3].startswith("metric x_s [c2]: 1 s (<= 2) ok")
    assert names[4].startswith("c2: `echo looked-at-c2; exit 3` → exit 3 in ")
    assert all(s["start"] <= t["start"] for s, t in zip(failed, failed[1:]))  # in the order they happened
    for s in failed[:3]:
        node = s["name"].split(":")[0]
        assert attachments(out, s) == {"stdout": f"from-{node}\n"}
    assert attachments(out, failed[4]) == {"stdout": "looked-at-c2\n"}


def test_a_command_over_the_nodes_ssh_transport_is_a_step_too(pytester):
    """The SSH check reaches the node over SSH rather than the provider's fast path: that
    command is evidence like any other (here the "SSH transport" is the local one)."""
    conftest = CONFTEST.replace('LocalTransport(n)) for n', 'LocalTransport(n), ssh=LocalTransport(n)) for n')
    cfg = write_suites(pytester, {"suites/conftest.py": conftest, "suites/l1_network/test_ssh.py": (
        "def test_over_ssh(cluster):\n    r = cluster.node('c2').run_ssh('echo over-ssh; exit 4')\n    assert r.ok\n")})
    result, out = run(pytester, cfg)
    result.assert_outcomes(failed=1)
    (step,) = steps(results(out)["test_over_ssh"])
    assert step["name"].startswith("c2: `echo over-ssh; exit 4` → exit 4 in ")
    assert attachments(out, step) == {"stdout": "over-ssh\n"}


def test_with_attach_output_passing_checks_carry_their_output_too(pytester):
    cfg = write_suites(pytester, {"suites/conftest.py": CONFTEST, "suites/l1_network/test_cmds.py": CHECKS})
    result, out = run(pytester, cfg, "out", "--hpc-attach-output", "-k", "passes")
    result.assert_outcomes(passed=1)
    (step,) = steps(results(out)["test_passes"])
    assert attachments(out, step) == {"stdout": "out-c1\n", "stderr": "err-c1\n"}


def test_more_commands_than_steps_end_in_one_summary_step(pytester):
    cfg = write_suites(pytester, {
        "suites/conftest.py": CONFTEST + (
            "\n@pytest.fixture(autouse=True)\ndef few_steps(monkeypatch):\n"
            "    from pytest_hpcvalidate.report import evidence\n    monkeypatch.setattr(evidence, 'MAX_STEPS', 3)\n"
        ),
        "suites/l1_network/test_many.py": (
            "def test_many(cluster, metric):\n"
            "    for i in range(5):\n        cluster.node('c1').run(f'echo {i}')\n"
            "    metric('late', 1, 's')\n"
        ),
    })
    result, out = run(pytester, cfg)
    result.assert_outcomes(passed=1)
    names = [s["name"] for s in steps(results(out)["test_many"])]
    assert len(names) == 4 and names[3] == "3 more events not shown (2 commands on 1 nodes)"
    summary = steps(results(out)["test_many"])[3]
    assert [s["name"] for s in steps(summary)] == ["metric late: 1 s ok"]  # metrics are never dropped


def test_secrets_in_commands_and_outputs_are_never_attached(pytester):
    key = os.urandom(1024)
    (pytester.path / "munge.key").write_bytes(key)
    private = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW"
    (pytester.path / "id_ed25519").write_text(
        f"-----BEGIN OPENSSH PRIVATE KEY-----\n{private}\n-----END OPENSSH PRIVATE KEY-----\n")
    (pytester.path / "slurmdbd.conf").write_text("StorageUser=slurm\nStoragePass=hunter2\n")
    secrets_test = """
def test_reads_secrets(cluster):
    n = cluster.node("c1")
    password = open("slurmdbd.conf").read().split("StoragePass=")[1].strip()  # not in this source
    for cmd in ("cat munge.key", "base64 munge.key", "xxd munge.key | head -5", "cat id_ed25519",
                "cat slurmdbd.conf", f"echo connecting with --password={password}"):
        n.run(cmd)
    assert False, "looked at the secrets"
"""
    cfg = write_suites(pytester, {"suites/conftest.py": CONFTEST, "suites/l1_network/test_secrets.py": secrets_test})
    result, out = run(pytester, cfg)
    result.assert_outcomes(failed=1)
    doc = results(out)["test_reads_secrets"]
    bodies = [attachments(out, s) for s in steps(doc)]
    assert len(bodies) == 6 and all(b.get("stdout") for b in bodies)  # every command's output was attached...
    everything = json.dumps(doc) + "".join(p.read_text(errors="replace") for p in (out / "allure-results").iterdir())
    # ...and none of the secrets is anywhere in the results: munge key (raw, base64, hex), private key, password
    for secret in ["hunter2", private, base64.b64encode(key).decode()[:24], key[:8].hex(), key[:16].decode("latin-1")]:
        assert secret not in everything
    assert bodies[0]["stdout"].startswith("[REDACTED]")
    assert "StorageUser=slurm" in bodies[4]["stdout"]  # what is not secret stays readable
