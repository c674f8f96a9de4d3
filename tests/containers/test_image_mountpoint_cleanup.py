"""The container image's mount point directories that ``up`` made on the host are recorded in
the cluster's state file and removed by the base teardown from that file alone, so that
``cleanup``/``destroy`` of a crashed or kept cluster leaves none behind (no cluster needed:
the directories are real, the cluster is only its state file)."""

from __future__ import annotations

from pathlib import Path

from pytest_hpcvalidate.providers.local.addons.container_image import MOUNTPOINT_KIND
from pytest_hpcvalidate.providers.local.cleanup import teardown
from pytest_hpcvalidate.providers.local.state import State


def crashed_cluster(root: Path, name: str, target: Path, created: Path | None, *more_targets: Path) -> State:
    """A cluster's state file as ``up`` leaves it: the mount points recorded (each with the
    highest directory missing before, the same for all as they are recorded before any is made)."""
    state = State.create(root / name, name)
    state.add("workdir", path=str(root / name))
    for t in (target, *more_targets):
        state.add(MOUNTPOINT_KIND, path=str(t), created=str(created) if created else None)
    return state


def test_teardown_from_the_state_removes_the_mount_points_it_made(tmp_path: Path) -> None:
    made = tmp_path / "host" / "images"  # did not exist before up: ours
    (made / "image").mkdir(parents=True)
    (made / "bundle").mkdir()
    state = crashed_cluster(tmp_path / "states", "c1", made / "image", made, made / "bundle")
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


def test_teardown_spares_another_clusters_mount_point_below_the_same_top(tmp_path: Path) -> None:
    """Cluster a made ``images/`` itself (its ``created`` top); cluster b's mount point came
    later below it. b's directory is empty on the host (its mounts live in b's nodes), yet it
    is not a's: removing it would detach b's image inside b's nodes."""
    images = tmp_path / "host" / "images"
    (images / "a" / "image").mkdir(parents=True)
    (images / "b" / "image").mkdir(parents=True)
    state = crashed_cluster(tmp_path / "states", "a", images / "a" / "image", images)
    assert teardown(state) == []
    assert (images / "b" / "image").is_dir()
    assert not (images / "a").exists()
