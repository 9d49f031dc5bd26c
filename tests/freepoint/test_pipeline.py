"""Pseudo-label pipeline on synthetic rooms: background out, boxes apart; vote; σ; caching and resume."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest

from freepoint_bench.data.scene import Scene
from freepoint_bench.errors import ConfigError, DataError
from freepoint_bench.freepoint.config import PseudoLabelConfig
from freepoint_bench.freepoint.pipeline import (
    drop_small_segments,
    generate_pseudo_labels,
    label_path,
    load_pseudo_labels,
    majority_vote,
    run_pseudo_labels,
    snap_to_superpoints,
)

CFG = PseudoLabelConfig(plane_distance_threshold=0.02, plane_min_points=300)


def _check_boxes(scene, labels):
    box = scene.instance
    assert labels.dtype == np.int64 and labels.shape == (scene.num_points,)
    assert (labels[box < 0] == -1).all()  # floor and walls are background
    for seg in np.unique(labels[labels >= 0]):
        assert len(np.unique(box[labels == seg])) == 1  # no segment spans two boxes or the background
    for b in range(box.max() + 1):
        assert (labels[box == b] >= 0).mean() > 0.5  # most of each box is segmented
    assert np.array_equal(np.unique(labels[labels >= 0]), np.arange(labels.max() + 1))  # contiguous


def test_room_background_removed_boxes_separate(room):
    result = generate_pseudo_labels(room, CFG, sigmas=(0.9, 1.2))
    assert set(result.labels) == {0.9, 1.2}
    for labels in result.labels.values():
        _check_boxes(room, labels)
    assert not result.foreground[room.instance < 0].any()
    assert result.num_segments[0.9] >= result.num_segments[1.2] >= 4
    assert {"planes", "fps", "features", "graph", "affinities", "multicut", "vote", "total"} <= set(
        result.timings
    )
    assert result.num_sampled == pytest.approx(0.5 * result.foreground.sum(), abs=2)


def test_segment_count_non_increasing_with_sigma(room):
    # min_segment_size=1: dropping small segments would hide the over-segmented end of the sweep.
    cfg = CFG.with_overrides({"min_segment_size": 1})
    result = generate_pseudo_labels(room, cfg, sigmas=(-0.5, 0.0, 0.5, 0.9, 1.2, 2.0, 4.0))
    counts = [result.num_segments[s] for s in sorted(result.num_segments)]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]


def test_seeded_and_deterministic(room):
    a = generate_pseudo_labels(room, CFG, sigmas=(0.9,))
    b = generate_pseudo_labels(room, CFG, sigmas=(0.9,))
    assert np.array_equal(a.labels[0.9], b.labels[0.9])


def test_deep_features_change_the_answer_and_are_checked(room):
    # Deep features that separate left from right halves of the room split boxes 0/2 from 1/3 further.
    deep = np.c_[room.xyz[:, 0] > 2.0, room.xyz[:, 0] <= 2.0].astype(np.float32) + 0.01
    cfg = CFG.with_overrides({"alpha_emb": 1.0})
    r = generate_pseudo_labels(room, cfg, sigmas=(0.9,), features=deep)
    _check_boxes(room, r.labels[0.9])
    with pytest.raises(DataError, match="deep features"):
        generate_pseudo_labels(room, cfg, sigmas=(0.9,), features=deep[:10])
    with pytest.raises(DataError):
        generate_pseudo_labels(room, cfg, sigmas=(0.9,), features=np.full_like(deep, np.nan))


def test_no_rgb_switches_colour_off(room, caplog):
    scene = room.with_(meta={**room.meta, "no_rgb": True}, rgb=np.zeros_like(room.rgb))
    with caplog.at_level(logging.WARNING):
        r = generate_pseudo_labels(scene, CFG, sigmas=(0.9,))
    assert "no colours" in caplog.text
    _check_boxes(scene, r.labels[0.9])


def test_all_planes_gives_no_segments():
    rng = np.random.default_rng(0)
    xyz = np.c_[rng.random((3000, 2)) * 3, np.zeros(3000)]
    scene = Scene(name="flat", xyz=xyz, rgb=np.full((3000, 3), 0.5))
    r = generate_pseudo_labels(scene, CFG, sigmas=(0.9, 1.2))
    assert not r.foreground.any() and all((v == -1).all() for v in r.labels.values())
    assert r.num_segments == {0.9: 0, 1.2: 0}


def test_tiny_and_duplicate_scenes():
    cfg = CFG.with_overrides({"min_segment_size": 1, "plane_max_count": 0})
    tiny = Scene(name="tiny", xyz=np.array([[0.0, 0, 0], [0.01, 0, 0], [0.02, 0, 0]]), rgb=np.ones((3, 3)))
    r = generate_pseudo_labels(tiny, cfg, sigmas=(0.9,))  # 2 sampled points < k1 + 1: joined to all others
    assert r.labels[0.9].shape == (3,) and (r.labels[0.9] >= 0).all()
    single = Scene(name="one", xyz=np.zeros((1, 3)), rgb=np.ones((1, 3)))
    assert generate_pseudo_labels(single, cfg, sigmas=(0.9,)).labels[0.9].tolist() == [0]
    rng = np.random.default_rng(0)
    blob = rng.normal(0, 0.05, (400, 3))
    dup = Scene(name="dup", xyz=np.repeat(blob, 3, axis=0), rgb=np.full((1200, 3), 0.3))
    r = generate_pseudo_labels(dup, cfg, sigmas=(0.9,))
    labels = r.labels[0.9]
    assert (labels >= 0).all()
    assert (labels.reshape(-1, 3) == labels.reshape(-1, 3)[:, :1]).all()  # duplicates share a label


def test_majority_vote_against_brute_force():
    rng = np.random.default_rng(0)
    nl = rng.integers(0, 4, (500, 5))
    got = majority_vote(nl)
    for row, g in zip(nl, got, strict=True):
        counts = {v: (row == v).sum() for v in row}
        best = max(counts.values())
        expected = next(v for v in row if counts[v] == best)  # ties → nearest
        assert g == expected
    assert majority_vote(np.array([[3, 1, 1, 3]])).tolist() == [3]
    assert majority_vote(np.array([[2, 1, 1, 5]])).tolist() == [1]


def test_snap_to_superpoints_hand_worked():
    labels = np.array([0, 0, 1, 2, 2, 1, -1, -1, 3, 4, 4, 3])
    sp = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 3])
    # sp 0: 0 0 1 → 0; sp 1: 2 2 1 → 2; sp 2: only -1 → -1; sp 3: 3 4 4 3 tie → smallest, 3
    assert snap_to_superpoints(labels, sp).tolist() == [0, 0, 0, 2, 2, 2, -1, -1, 3, 3, 3, 3]
    # -1 does not vote: one labelled point decides its superpoint
    assert snap_to_superpoints(np.array([-1, -1, 7]), np.array([5, 5, 5])).tolist() == [7, 7, 7]
    assert snap_to_superpoints(np.zeros(0, np.int64), np.zeros(0, np.int64)).tolist() == []
    with pytest.raises(ValueError):
        snap_to_superpoints(np.zeros(3, np.int64), np.zeros(4, np.int64))


def test_snap_to_superpoints_against_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(20):
        m = int(rng.integers(1, 60))
        labels = rng.integers(-1, 5, m)
        sp = rng.integers(0, 8, m)
        got = snap_to_superpoints(labels, sp)
        for piece in np.unique(sp):
            votes = labels[(sp == piece) & (labels >= 0)]
            if len(votes) == 0:
                expected = -1
            else:
                counts = {v: int((votes == v).sum()) for v in set(votes.tolist())}
                expected = min(v for v, c in counts.items() if c == max(counts.values()))
            assert (got[sp == piece] == expected).all()


def test_superpoints_option_keeps_boxes_apart_and_is_deterministic(room):
    cfg = CFG.with_overrides({"superpoints": True})
    a = generate_pseudo_labels(room, cfg, sigmas=(0.9,))
    b = generate_pseudo_labels(room, cfg, sigmas=(0.9,))
    assert np.array_equal(a.labels[0.9], b.labels[0.9])
    assert "superpoints" in a.timings
    _check_boxes(room, a.labels[0.9])
    plain = generate_pseudo_labels(room, CFG, sigmas=(0.9,))
    assert "superpoints" not in plain.timings


def test_superpoints_make_each_piece_one_segment(room):
    # A huge FH threshold joins every connected surface into one piece: each box (not touching the others once
    # the floor is gone) is then one segment whatever σ does, even σ far below where boxes split into parts.
    cfg = CFG.with_overrides({"superpoints": True, "superpoint_threshold": 1e6, "min_segment_size": 1})
    over = generate_pseudo_labels(room, CFG.with_overrides({"min_segment_size": 1}), sigmas=(-1.0,))
    snapped = generate_pseudo_labels(room, cfg, sigmas=(-1.0,))
    assert over.num_segments[-1.0] > 4
    labels = snapped.labels[-1.0]
    assert snapped.num_segments[-1.0] == 4
    for b in range(room.instance.max() + 1):
        box = labels[room.instance == b]
        assert len(np.unique(box[box >= 0])) == 1 and (box >= 0).mean() > 0.9  # the rest: floor-plane inliers


def test_drop_small_segments():
    labels = np.array([0, 0, 0, 1, 2, 2, -1, 5, 5, 5])
    assert drop_small_segments(labels, 3).tolist() == [0, 0, 0, -1, -1, -1, -1, 1, 1, 1]


def test_bad_sigma_list(room):
    with pytest.raises(ConfigError):
        generate_pseudo_labels(room, CFG, sigmas=())


def test_run_caches_and_resumes(tmp_path, small_rooms):
    scenes = small_rooms
    seen = []
    s1 = run_pseudo_labels(scenes, None, CFG, (0.9, 1.2), tmp_path, progress=seen.append)
    assert s1["computed"] == 3 and s1["cached"] == 0 and len(seen) == 3
    first = load_pseudo_labels(tmp_path, "room_2", 0.9)
    assert first.shape == (scenes[1].num_points,)
    s2 = run_pseudo_labels(scenes, None, CFG, (0.9, 1.2), tmp_path)
    assert s2["computed"] == 0 and s2["cached"] == 3
    # A corrupt file and a missing file are recomputed; other scenes stay cached.
    label_path(tmp_path, "room_1", 1.2).write_bytes(b"PK\x03\x04 truncated")
    label_path(tmp_path, "room_3", 0.9).unlink()
    s3 = run_pseudo_labels(scenes, None, CFG, (0.9, 1.2), tmp_path)
    assert s3["computed"] == 2 and s3["cached"] == 1
    assert np.array_equal(load_pseudo_labels(tmp_path, "room_2", 0.9), first)
    # Another config is another cache key.
    s4 = run_pseudo_labels(scenes, ["room_1"], CFG.with_overrides({"k1": 6}), (0.9, 1.2), tmp_path)
    assert s4["computed"] == 1
    assert (tmp_path / "summary_0_of_1.json").is_file()


def test_run_shards_and_workers(tmp_path, small_rooms):
    scenes = {s.name: s for s in small_rooms}
    a = run_pseudo_labels(scenes, None, CFG, (0.9,), tmp_path / "a", shard=(0, 2))
    b = run_pseudo_labels(scenes, None, CFG, (0.9,), tmp_path / "a", shard=(1, 2))
    assert [r["scene"] for r in a["scenes"]] == ["room_1", "room_3"]
    assert [r["scene"] for r in b["scenes"]] == ["room_2"]
    par = run_pseudo_labels(scenes, None, CFG, (0.9,), tmp_path / "b", workers=2)
    assert par["computed"] == 3
    for name in scenes:
        a_labels = load_pseudo_labels(tmp_path / "a", name, 0.9)
        assert np.array_equal(a_labels, load_pseudo_labels(tmp_path / "b", name, 0.9))
    with pytest.raises(ConfigError):
        run_pseudo_labels(scenes, None, CFG, (0.9,), tmp_path, shard=(2, 2))


def test_names_that_shared_a_folder_get_their_own(tmp_path, small_rooms):
    # 'a b' and 'a_b' were both written to a_b/: each run overwrote the other's labels, and loading one
    # scene could hand back the other's
    scenes = [replace(small_rooms[0], name="a b"), replace(small_rooms[1], name="a_b")]
    assert label_path(tmp_path, "a b", 0.9).parent != label_path(tmp_path, "a_b", 0.9).parent
    assert run_pseudo_labels(scenes, None, CFG, (0.9,), tmp_path)["computed"] == 2
    assert run_pseudo_labels(scenes, None, CFG, (0.9,), tmp_path)["cached"] == 2
    ab, a_b = (load_pseudo_labels(tmp_path, s.name, 0.9) for s in scenes)
    assert not np.array_equal(ab, a_b)  # two rooms, two labellings: not one file read twice
    # a file holding another scene's labels (what the shared folder left behind) is refused, not returned
    label_path(tmp_path, "a b", 0.9).replace(label_path(tmp_path, "a_b", 0.9))
    with pytest.raises(DataError, match="holds the labels of scene 'a b', not 'a_b'"):
        load_pseudo_labels(tmp_path, "a_b", 0.9)


def test_labels_in_a_folder_named_before_are_moved_not_recomputed(tmp_path, small_rooms):
    scene = replace(small_rooms[0], name="my scan")
    run_pseudo_labels([scene], None, CFG, (0.9, 1.2), tmp_path)
    old = tmp_path / "my_scan"  # the folder the lossy encoding gave 'my scan'
    old.mkdir()
    for sigma in (0.9, 1.2):
        label_path(tmp_path, "my scan", sigma).replace(old / label_path(tmp_path, "my scan", sigma).name)
    with pytest.raises(DataError, match="rerun pseudo-labelling on this folder: it moves them"):
        load_pseudo_labels(tmp_path, "my scan", 0.9)
    summary = run_pseudo_labels([scene], None, CFG, (0.9, 1.2), tmp_path)
    assert summary["cached"] == 1 and summary["computed"] == 0
    assert load_pseudo_labels(tmp_path, "my scan", 1.2).shape == (scene.num_points,)
    assert not list(old.iterdir())


def test_load_missing_or_corrupt(tmp_path):
    with pytest.raises(DataError, match="no pseudo labels"):
        load_pseudo_labels(tmp_path, "nope", 0.9)
    path = label_path(tmp_path, "bad", 0.9)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage")
    with pytest.raises(DataError, match="corrupt"):
        load_pseudo_labels(tmp_path, "bad", 0.9)


def test_plain_preset_separates_the_boxes(room):
    plain = PseudoLabelConfig.preset("plain")
    result = generate_pseudo_labels(room, plain)
    assert set(result.labels) == {0.6, 0.8}
    _check_boxes(room, result.labels[0.6])
    again = generate_pseudo_labels(room, plain)
    assert np.array_equal(result.labels[0.6], again.labels[0.6])
