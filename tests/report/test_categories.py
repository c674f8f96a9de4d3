"""categories.json files every kind of non-pass where a reviewer expects it: product defects
(a check's assertion, a command that had to succeed), infrastructure (a node the transport
cannot reach, a cluster that cannot be attached to), blocked (the layer gate), not
applicable (a missing capability), and the sign-off itself. Proven on the results of a real
run: by the same matching rule Allure applies, and by Allure's own generator."""

from __future__ import annotations

import json

import pytest
from reportkit import run, write_suites

from pytest_hpcvalidate.report import allure_files, allure_html

KINDS = {
    "suites/l1_network/test_kinds.py": """
        import pytest
        from pytest_hpcvalidate.cluster import Node
        from pytest_hpcvalidate.transport.local import LocalTransport
        from pytest_hpcvalidate.transport.nsenter import NsenterTransport

        def test_assertion_fails():
            assert False, "c2 cannot reach c1 (10.9.0.2): 100% loss"

        def test_command_that_must_succeed_fails():
            Node("c1", "compute", "10.9.0.2", LocalTransport("c1")).run("echo no such partition >&2; exit 2").check()

        def test_node_cannot_be_reached():
            gone = 4194305  # above the kernel's largest pid: no process has it
            Node("c2", "compute", "10.9.0.3", NsenterTransport("c2", gone)).run("hostname")

        def test_cluster_cannot_be_attached(cluster):
            pass

        @pytest.mark.requires("gpu")
        def test_gpu_check():
            pass
    """,
    "suites/l2_slurm/test_reg.py": "def test_registered():\n    pass\n",
}

EXPECTED = {
    "test_assertion_fails": "Product defects",
    "test_command_that_must_succeed_fails": "Product defects",
    "test_node_cannot_be_reached": "Infrastructure errors",
    "test_cluster_cannot_be_attached": "Infrastructure errors",
    "test_gpu_check": "Not applicable",
    "test_registered": "Blocked by a lower layer",
    "Sign-off: cluster hpcvnone": "Not signed off",
}


def run_kinds(pytester):
    # --hpc-reuse of a cluster that is not running: attaching fails like an unreachable cluster
    cfg = write_suites(pytester, KINDS, name="hpcvnone")
    result, out = run(pytester, cfg, "out", "--hpc-reuse")
    result.assert_outcomes(failed=3, errors=1, skipped=2)
    return out / "allure-results"


def test_each_kind_lands_in_its_category_by_allures_matching_rule(pytester):
    results = run_kinds(pytester)
    docs = [json.loads(p.read_text()) for p in results.glob("*-result.json")]
    got = {d["name"]: allure_files.category_of(d["status"], d.get("statusDetails", {}).get("message")) for d in docs}
    assert got == {name: [category] for name, category in EXPECTED.items()}


def test_allures_generator_files_them_the_same_way(pytester, tmp_path):
    reason = allure_html.missing_tools()
    if reason:
        pytest.skip(f"needs Allure's generator and Java (bash setup.sh installs them): {reason}")
    allure_html.generate(run_kinds(pytester), tmp_path / "html", single_file=False)
    tree = json.loads((tmp_path / "html" / "data" / "categories.json").read_text())

    def leaves(node):
        for child in node.get("children", []):
            yield from (leaves(child) if "children" in child else [child["name"]])

    got = {name: category["name"] for category in tree["children"] for name in leaves(category)}
    assert got == EXPECTED
