"""Container probes and the test-image builder without a cluster: version parsing (recorded
outputs of ch-run and runc in fixtures/containers/; Apptainer/Singularity, which cannot be
installed here, in the format their ``--version`` prints), the command shapes per runtime,
the parsers, and a real skeleton build with its cache."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from pytest_hpcvalidate.probes import containers as ctr
from pytest_hpcvalidate.providers.local.addons import container_image as ci
from pytest_hpcvalidate.transport import CommandResult

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "containers"


@pytest.mark.parametrize("text, version", [
    ((FIX / "ch-run-version.txt").read_text(), "0.31"),
    ((FIX / "runc-version.txt").read_text(), "1.1.5"),
    ("apptainer version 1.4.2\n", "1.4.2"),
    ("singularity-ce version 4.1.0-jammy\n", "4.1.0"),
    ("NOT FOUND ch-run\n", None),
    ((FIX / "ch-run-no-image.txt").read_text(), None),
])
def test_parse_version(text, version):
    assert ctr.parse_version(text) == version


def test_at_least_is_numeric():
    assert ctr.at_least("1.4.10", "1.4.2") and ctr.at_least("0.31", "0.31.0") and not ctr.at_least("0.31", "0.32")


def test_command_shapes_per_runtime():
    binds = ("/shared", "/scratch")
    app = ctr.Runtime("apptainer", "/img/pytorch.sif", binds)
    assert app.wrap("nproc", gpu=True) == "exec apptainer exec --nv -B /shared,/scratch /img/pytorch.sif /bin/sh -c nproc"
    assert app.srun_options() == ""
    ch = ctr.Runtime("charliecloud", "/img/dir", binds)
    assert ch.wrap("nproc").endswith("exec ch-run -b /shared -b /scratch /img/dir -- /bin/sh -c nproc")
    assert ch.wrap("nproc").startswith('export USER="${USER:-$(id -un)}"')  # ch-run refuses to run without it
    oci = ctr.Runtime("slurm-oci", "/img/bundle")
    assert oci.srun_options() == "--container=/img/bundle" and oci.wrap("nproc") == "nproc"


def test_shared_dir_bound_unless_covered():
    assert ctr.with_shared_dir(["/var/lib/hpcv"], "/var/lib/hpcv/c/shared") == ["/var/lib/hpcv"]
    assert ctr.with_shared_dir([], "/shared") == ["/shared"]


def test_image_check_and_problems():
    ok = ctr.parse_image_check("KIND dir\nREAD ok\nSHELL yes\nOSREL Debian GNU/Linux 12 (bookworm)\n")
    assert ok.problem() is None and ok.os_release == "Debian GNU/Linux 12 (bookworm)"
    assert "without /bin/sh" in ctr.parse_image_check("KIND dir\nREAD ok\nSHELL no\nOSREL \n").problem()
    assert ctr.parse_image_check("KIND missing\n").problem().startswith("missing")
    assert "Permission denied" in ctr.parse_image_check("KIND file\nREAD head: Permission denied\n").problem()


def test_identity_per_task_from_labelled_output():
    text = "1: OSREL hpcvalidate test image 1\n0: OSREL hpcvalidate test image 1\n0: PROCID 0\n1: PROCID 1\n"
    tasks = ctr.task_lines(text)
    assert sorted(ctr.parse_identity(v).procid for v in tasks.values()) == ["0", "1"]
    assert ctr.parse_identity(["OSREL x", "PROCID unset"]) == ctr.Identity("x", None)


def _result(code: int, out: str = "", err: str = "") -> CommandResult:
    return CommandResult("ctl", "srun", code, out, err, 0.1)


def test_oom_seen_through_slurm_or_runc():
    assert ctr.oom_killed(_result(0), "OUT_OF_MEMORY")
    assert ctr.oom_killed(_result(1, err="slurmstepd: error: Detected 1 oom-kill event(s) in StepId=5.0"))
    assert ctr.oom_killed(_result(137))  # runc under Slurm's --container: only the SIGKILL shows
    assert not ctr.oom_killed(_result(0), "COMPLETED")


def test_torch_report_problems():
    good = ("TORCH 2.13.0 RANK 0 OF 2 ON c1 CUDA False PYTHON 3.11.2\nTORCH 2.13.0 RANK 1 OF 2 ON c2 CUDA False "
            "PYTHON 3.11.2\nMATMUL ok\nMATMUL ok\nALLREDUCE 3 EXPECTED 3\nALLREDUCE 3 EXPECTED 3\n")
    assert ctr.parse_torch(good).problems(2, ["c1", "c2"]) == []
    bad = ctr.parse_torch(good.replace("ALLREDUCE 3 EXPECTED 3\nALLREDUCE 3", "ALLREDUCE 2 EXPECTED 3\nALLREDUCE 3"))
    assert any("sums ['2 (expected 3)']" in p for p in bad.problems(2, ["c1", "c2"]))
    assert any("ranks [1]" in p for p in ctr.parse_torch(good.split("TORCH 2.13.0 RANK 1")[0]).problems(2, ["c1", "c2"]))


def _digest(path: Path) -> str:
    out = subprocess.run(["/bin/sh", "-c", ctr.digest_command(str(path))], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return ctr.parse_digest(out.stdout)


def test_skeleton_build_is_cached_and_digest_follows_content(tmp_path):
    recipe = ci.Recipe("skeleton", ("/shared",), None, bundle=False)
    entry, cached = ci.build(recipe, tmp_path)
    assert not cached and (entry / "rootfs" / "etc" / "os-release").read_text() == ci.SKELETON_OS_RELEASE
    assert (entry / "rootfs" / "shared").is_dir() and (entry / "rootfs" / "bin").is_symlink()
    assert ci.build(recipe, tmp_path) == (entry, True)
    before = _digest(entry / "rootfs")
    assert before == _digest(entry / "rootfs")
    (entry / "rootfs" / "etc" / "hostname").write_text("x\n")
    assert _digest(entry / "rootfs") != before
    image_file = tmp_path / "image.sif"
    image_file.write_bytes(b"SIF")
    assert _digest(image_file) == hashlib.sha256(b"SIF").hexdigest()  # a SIF: the file's own sha256


def test_torch_with_debootstrap_is_refused_with_the_field():
    with pytest.raises(Exception, match="containers.expect.torch"):
        ci.recipe_for({"runtime": "charliecloud", "test_image": "debootstrap", "expect": {"torch": "2.13.0"}}, Path("/s"))
