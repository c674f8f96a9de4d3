"""The host-wide neighbour-table limits a local cluster raises and teardown restores, against a
fake /proc/sys directory and registry (the real one is exercised by the 1+32 integration test)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_hpcvalidate.providers.local import hostlimits as hl

DEBIAN = {"gc_thresh1": 128, "gc_thresh2": 512, "gc_thresh3": 1024}


def fake_host(root: Path, values=DEBIAN) -> tuple[Path, Path]:
    sysctl = root / "sys"
    sysctl.mkdir(parents=True, exist_ok=True)
    for k, v in values.items():
        (sysctl / k).write_text(f"{v}\n")
    return sysctl, root / "run" / "neigh-limits.json"


def cluster_dir(root: Path, name: str) -> Path:
    d = root / "clusters" / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_a_small_cluster_writes_nothing(tmp_path):
    sysctl, reg = fake_host(tmp_path)
    assert hl.reserve(cluster_dir(tmp_path, "a"), 5, sysctl, reg) is None
    assert hl.read_limits(sysctl) == DEBIAN and hl.counted(cluster_dir(tmp_path, "a"), reg)
    assert hl.release(cluster_dir(tmp_path, "a"), sysctl, reg) is None
    assert hl.read_limits(sysctl) == DEBIAN and not hl.counted(cluster_dir(tmp_path, "a"), reg)


def test_raised_for_all_live_clusters_and_restored_after_the_last(tmp_path):
    sysctl, reg = fake_host(tmp_path)
    a, b = cluster_dir(tmp_path, "a"), cluster_dir(tmp_path, "b")
    hl.reserve(a, 33, sysctl, reg)  # 1+32 nodes: 1122 entries, past Debian's 1024
    after_a = hl.read_limits(sysctl)
    assert after_a["gc_thresh3"] >= hl.neighbours_needed(33) + hl.RESERVE
    assert after_a["gc_thresh2"] >= 2 * hl.neighbours_needed(33)
    assert after_a["gc_thresh1"] == 128
    hl.reserve(b, 33, sysctl, reg)
    both = hl.read_limits(sysctl)
    assert both["gc_thresh2"] >= 4 * hl.neighbours_needed(33) and both["gc_thresh3"] > both["gc_thresh2"]
    hl.release(a, sysctl, reg)
    assert hl.read_limits(sysctl) == both  # b still up: never lowered under a live cluster
    assert hl.release(b, sysctl, reg) == DEBIAN
    assert hl.read_limits(sysctl) == DEBIAN


def test_never_lowers_a_host_that_had_more(tmp_path):
    big = {"gc_thresh1": 1024, "gc_thresh2": 16384, "gc_thresh3": 32768}
    sysctl, reg = fake_host(tmp_path, big)
    assert hl.reserve(cluster_dir(tmp_path, "a"), 64, sysctl, reg) is None
    assert hl.release(cluster_dir(tmp_path, "a"), sysctl, reg) is None
    assert hl.read_limits(sysctl) == big


def test_a_change_made_by_someone_else_is_kept(tmp_path):
    sysctl, reg = fake_host(tmp_path)
    a = cluster_dir(tmp_path, "a")
    hl.reserve(a, 40, sysctl, reg)
    (sysctl / "gc_thresh3").write_text("99999\n")  # the operator raised it meanwhile
    assert hl.release(a, sysctl, reg) is None
    assert hl.read_limits(sysctl)["gc_thresh3"] == 99999


def test_a_cluster_whose_work_dir_is_gone_no_longer_counts(tmp_path):
    sysctl, reg = fake_host(tmp_path)
    crashed, live = cluster_dir(tmp_path, "crashed"), cluster_dir(tmp_path, "live")
    hl.reserve(crashed, 40, sysctl, reg)
    crashed.rmdir()  # removed by hand after a crash, never released
    hl.reserve(live, 40, sysctl, reg)
    assert hl.release(live, sysctl, reg) == DEBIAN
    assert hl.read_limits(sysctl) == DEBIAN


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 70), st.booleans()), max_size=12))
def test_any_order_of_ups_and_downs(steps):
    """Whatever the order, the limits cover every live cluster and end where they began."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sysctl, reg = fake_host(root)
        live: dict[int, int] = {}
        for which, nodes, up in steps:
            d = cluster_dir(root, str(which))
            if up:
                hl.reserve(d, nodes, sysctl, reg)
                live[which] = nodes
            else:
                hl.release(d, sysctl, reg)
                live.pop(which, None)
            now = hl.read_limits(sysctl)
            need = sum(hl.neighbours_needed(n) for n in live.values())
            assert now["gc_thresh3"] >= max(1024, need + hl.RESERVE)
            assert 2 * need <= now["gc_thresh2"] <= now["gc_thresh3"]
        for which in list(live):
            hl.release(cluster_dir(root, str(which)), sysctl, reg)
        assert hl.read_limits(sysctl) == DEBIAN
