"""The container image's mount point directories that ``up`` made on the host are recorded in
the cluster's state file and removed by the base teardown from that file alone, so that
``cleanup``/``destroy`` of a crashed or kept cluster leaves none behind (no cluster needed:
the directories are real, the cluster is only its state file)."""

from __future__ import annotations

from pathlib import Path

from pytest_hpcvalidate.providers.local.addons.container_image import MOUNTPOINT_KIND
from pytest_hpcvalidate.providers.local.cleanup import teardown
from pytest_hpcvalidate.providers.local.state import State


def crashed_cluster(root: Path, name: str, target: Path, created: Path | None) -> State:
    state = State.create(root / name, name)
    state.add("workdir", path=str(root / name))
    state.add(MOUNTPOINT_KIND, path=str(target), created=str(created) if created else None)
    return state


def test_teardown_from_the_state_removes_the_mount_points_it_made(tmp_path: Path) -> None:
    made = tmp_path / "host" / "images"  # did not exist before up: ours
    (made / "image").mkdir(parents=True)
    (made / "bundle").mkdir()
    state = crashed_cluster(tmp_path / "states", "c1", made / "image", made)
    assert teardown(state) == []
    assert not made.exists() and (tmp_path / "host").is_dir()
    assert not state.work_dir.exists()


def test_teardown_leaves_what_it_did_not_make_or_what_others_use(tmp_path: Path) -> None:
    existing = tmp_path / "host" / "opt"  # was there before up: created is None
    (existing / "image").mkdir(parents=True)
    state = crashed_cluster(tmp_path / "states", "c2", existing / "image", None)
    assert teardown(state) == []
    assert (existing / "image").is_dir()

    made = tmp_path / "host" / "made"
    (made / "image").mkdir(parents=True)
    (made / "image" / "someone-elses-file").write_text("not ours")
    state = crashed_cluster(tmp_path / "states", "c3", made / "image", made)
    assert teardown(state) == []
    assert (made / "image" / "someone-elses-file").is_file()
