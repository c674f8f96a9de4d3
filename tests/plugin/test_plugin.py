"""The plugin as users meet it, driven through pytest's own ``pytester``."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
name: t
network: {subnet: 10.9.0.0/24, bridge: br-t}
compute:
  - names: c[1-2]
"""


@pytest.fixture
def cfg(pytester):
    return pytester.makefile(".yaml", cluster=GOOD)


def test_without_hpc_config_ordinary_runs_are_unchanged(pytester):
    pytester.makepyfile(
        test_plain="""
        def test_b(): pass
        def test_a(): assert False
        def test_c(): pass
        """
    )
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_b PASSED*", "*test_a FAILED*", "*test_c PASSED*"])
    assert not [line for line in result.stdout.lines if line.startswith("hpcvalidate:")]


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, ["*ERROR: invalid cluster config*(1 problem)*", "*missing.yaml: file not found*"]),
        ("name: x\nnetwork: [1\n", ["*bad.yaml: invalid YAML: line 2, column 12*"]),
        (
            "name: Bad_Name\nnetwork: {subnet: 10.0.0.0/24, bridge: b, mtuu: 9000}\ncompute: [{names: c1, cpus: 0}]\n",
            [
                "*(3 problems)*",
                "*bad.yaml:1: name: 'Bad_Name' is not a cluster name*",
                "*bad.yaml:2: network.mtuu: unknown key 'mtuu' (did you mean 'mtu'?)*",
                "*bad.yaml:3: compute[[]0[]].cpus: must be >= 1, got 0*",
            ],
        ),
    ],
    ids=["missing-file", "yaml-syntax", "three-mistakes"],
)
def test_bad_config_is_a_usage_error_without_traceback(pytester, content, expected):
    if content is None:
        path = "missing.yaml"
    else:
        path = str(pytester.makefile(".yaml", bad=content))
    result = pytester.runpytest_subprocess("--hpc-config", path)
    assert result.ret == pytest.ExitCode.USAGE_ERROR == 4
    result.stderr.fnmatch_lines(expected)
    everything = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in everything and "pydantic" not in everything


def test_header_names_cluster_and_signoff_areas(pytester, cfg):
    pytester.makepyfile(test_x="def test_x(hpc_config): assert hpc_config.name == 't'")
    result = pytester.runpytest("--hpc-config", str(cfg), "test_x.py")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "hpcvalidate: cluster 't' from *, provider local, 3 nodes (2 compute)",
        "hpcvalidate: required for sign-off: nodes, network, slurm, cgroup, mpi",
    ])


def test_provider_override(pytester, cfg):
    pytester.makepyfile(test_x="def test_x(hpc_config): assert hpc_config.provider == 'existing'")
    pytester.runpytest("--hpc-config", str(cfg), "--hpc-provider", "existing", "test_x.py").assert_outcomes(passed=1)


def test_ini_options_work_like_flags(pytester, cfg):
    pytester.makeini(f"[pytest]\nhpc_config = {cfg}\n")
    pytester.makepyfile(test_x="def test_x(hpc_config): assert hpc_config.name == 't'")
    pytester.runpytest("test_x.py").assert_outcomes(passed=1)


def test_fixture_skips_with_reason_without_config(pytester):
    pytester.makepyfile(test_x="def test_x(hpc_config): pass")
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no cluster config: run with --hpc-config FILE*"])


def test_markers_are_registered(pytester):
    result = pytester.runpytest("--markers")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["@pytest.mark.layer(n)*", "@pytest.mark.area(name)*", "@pytest.mark.requires(capability)*"])
    assert any(line.startswith("@pytest.mark.mutates") for line in result.stdout.lines), "mutates is not registered"


def make_dummy_suites(pytester, l1_fails: bool, l2_fails: bool = False):
    """Dummy layered suites laid out like suites/, written in reverse layer order on purpose."""
    pytester.mkpydir("suites")
    files = {
        "suites/l5_storage/test_mount.py": "def test_mounted(): pass\n",
        "suites/l3_cgroup/test_cores.py": "def test_cores(): pass\n",
        "suites/l2_slurm/test_reg.py": f"def test_registered(): assert {not l2_fails}\n",
        "suites/l1_network/test_reach.py": (
            "import pytest\n"
            "@pytest.mark.parametrize('pair', ['a-b', 'b-a'])\n"
            f"def test_all_pairs_reachable(pair): assert not ({l1_fails} and pair == 'b-a'), 'b cannot reach a'\n"
        ),
    }
    for rel, body in files.items():
        p = pytester.path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        (p.parent / "__init__.py").touch()
        p.write_text(body)


def test_layers_run_lowest_first(pytester):
    make_dummy_suites(pytester, l1_fails=False)
    result = pytester.runpytest("-v", "suites")
    result.assert_outcomes(passed=5)
    order = [line.split("::")[0].split("/")[1] for line in result.stdout.lines if "PASSED" in line]
    assert order == ["l1_network", "l1_network", "l2_slurm", "l3_cgroup", "l5_storage"]


def test_a_failed_lower_layer_blocks_every_higher_layer(pytester):
    make_dummy_suites(pytester, l1_fails=True)
    result = pytester.runpytest("-rs", "suites")
    result.assert_outcomes(passed=1, failed=1, skipped=3)
    result.stdout.fnmatch_lines([
        "SKIPPED*l2_slurm/test_reg.py*blocked by l1_network::test_all_pairs_reachable[[]b-a[]] (L1 Nodes, networking and PCIe failed)",
        "SKIPPED*l3_cgroup*blocked by l1_network::test_all_pairs_reachable[[]b-a[]]*",
        "SKIPPED*l5_storage*blocked by l1_network::test_all_pairs_reachable[[]b-a[]]*",
    ])


def test_a_failure_blocks_only_layers_above_it(pytester):
    make_dummy_suites(pytester, l1_fails=False, l2_fails=True)
    result = pytester.runpytest("-rs", "suites")
    result.assert_outcomes(passed=2, failed=1, skipped=2)
    result.stdout.fnmatch_lines(["SKIPPED*l3_cgroup*blocked by l2_slurm::test_registered (L2 Slurm registration failed)"])


def test_markers_place_tests_outside_suites(pytester):
    pytester.makepyfile(
        test_marked="""
        import pytest
        @pytest.mark.area("storage")
        def test_storage(): pass
        @pytest.mark.layer(2)
        def test_slurm(): assert False
        @pytest.mark.area("network")
        def test_net(): pass
        def test_plain(): pass
        """
    )
    result = pytester.runpytest("-v", "-rs")
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    names = [line.split("::")[1].split()[0] for line in result.stdout.lines if "::" in line and "%]" in line]
    assert names == ["test_plain", "test_net", "test_slurm", "test_storage"]


def test_requires_marker_skips_with_capability_reason_and_strict_fails(pytester, cfg):
    gpu_cfg = pytester.makefile(
        ".yaml",
        gpu=GOOD.replace("- names: c[1-2]", "- names: c[1-2]\n    gpus: {count: 1, type: h100}") + "slurm: {gres_types: [gpu]}\n",
    )
    pytester.makepyfile(
        test_req="""
        import pytest
        @pytest.mark.area("gpu")
        @pytest.mark.requires("gpu")
        def test_gpu(): pass
        @pytest.mark.area("gpu")
        def test_skips(): pytest.skip("nvidia-smi not found on c1")
        """
    )
    plain = pytester.runpytest("--hpc-config", str(cfg), "-rs", "test_req.py")
    plain.assert_outcomes(skipped=2)
    plain.stdout.fnmatch_lines(["*requires gpu: the config declares no GPUs*"])
    # the gpu area is not declared by cfg: strict leaves not-applicable skips alone
    pytester.runpytest("--hpc-config", str(cfg), "--hpc-strict", "test_req.py").assert_outcomes(skipped=2)
    # declared: the requires check passes, and strict turns the other skip into a failure
    strict = pytester.runpytest("--hpc-config", str(gpu_cfg), "--hpc-strict", "test_req.py")
    strict.assert_outcomes(passed=1, failed=1)
    strict.stdout.fnmatch_lines(["*--hpc-strict: area 'gpu' is declared in the config but this check was skipped*nvidia-smi not found on c1*"])


def test_strict_fails_checks_the_config_calls_for_not_those_it_rules_out(pytester):
    """--hpc-strict (acceptance): in a declared area (slurm), a check the config rules out
    (accounting off: requires; not_applicable in the test; a per-node check on a config without
    such nodes) stays skipped; a check it calls for that this run skipped (no root on an
    existing cluster; pytest.skip in the test) fails, naming why."""
    cfg = pytester.makefile(".yaml", cluster=GOOD + "slurm: {accounting: false}\n")
    pytester.makepyfile(
        test_strict="""
        import pytest
        from pytest_hpcvalidate.capabilities import not_applicable
        pytestmark = pytest.mark.area("slurm")
        @pytest.mark.requires("accounting")
        def test_accounting(): pass
        def test_ruled_out(): not_applicable("slurm.job_memlock is null in the config")
        def test_per_gpu_node(gpu_node_name): pass
        def test_could_not(): pytest.skip("sudo -n refused on c1")
        def test_runs(): pass
        """
    )
    plain = pytester.runpytest("--hpc-config", str(cfg), "-rs", "test_strict.py")
    plain.assert_outcomes(passed=1, skipped=4)
    strict = pytester.runpytest("--hpc-config", str(cfg), "--hpc-strict", "-rsf", "test_strict.py")
    strict.assert_outcomes(passed=1, skipped=3, failed=1)
    strict.stdout.fnmatch_lines([
        "*requires accounting: slurm.accounting is off in the config*",
        "*test_strict.py:*: slurm.job_memlock is null in the config*",  # reported at the check's own line
        "*requires gpu: the config gives no node GPUs*",
        "*FAILED test_strict.py::test_could_not*",
    ])
    strict.stdout.fnmatch_lines(["--hpc-strict: area 'slurm' is declared in the config but this check was skipped: "
                                 "sudo -n refused on c1"])


def test_suites_are_collected_by_default_with_hpc_config(pytester, cfg, monkeypatch):
    """`pytest --hpc-config X` with no paths runs the shipped suites, from any directory."""
    result = pytester.runpytest("--hpc-config", str(cfg), "--collect-only", "-q")
    collected = result.stdout.str()
    assert "l1_network" in collected or "l2_slurm" in collected, collected


def test_report_dir_receives_allure_results(pytester, cfg):
    pytester.makepyfile(test_x="import pytest\n@pytest.mark.area('network')\ndef test_x(): pass")
    out = pytester.path / "out"
    pytester.runpytest("--hpc-config", str(cfg), "--hpc-report-dir", str(out), "test_x.py").assert_outcomes(passed=1)
    assert list((out / "allure-results").glob("*-result.json"))


def test_virtio_fs_mounts_alone_are_shared_storage_to_check(pytester, cfg):
    """A config whose only shared filesystem is a node's virtio-fs mount (the seed's way) requires
    the storage area, so its storage checks must run, not skip as "no shared storage"."""
    vf = pytester.makefile(".yaml", vf=GOOD.replace(
        "- names: c[1-2]",
        "- names: c[1-2]\n    virtio_fs_mounts:\n      - {tag: data, host_path: /srv/data, mount_point: /mnt/data}"))
    pytester.makepyfile(test_st="""
        import pytest
        @pytest.mark.area("storage")
        @pytest.mark.requires("storage")
        def test_storage(): pass
        """)
    pytester.runpytest("--hpc-config", str(vf), "test_st.py").assert_outcomes(passed=1)
    plain = pytester.runpytest("--hpc-config", str(cfg), "-rs", "test_st.py")
    plain.assert_outcomes(skipped=1)
    plain.stdout.fnmatch_lines(["*requires storage: the config declares no shared storage*"])
