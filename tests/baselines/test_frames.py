"""PointContrast / CSC on RGB-D frame pairs (views.source = "frames"): box-room sequences as a .sens and as a
SensReader export; pairs 25 frames apart that overlap, matches that correspond in world coordinates, a
checkpoint that fine-tuning loads, the cached pair index, resume, the CLI, and the default left as it was."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pytorch_lightning.callbacks import Callback
from synthetic_frames import box_room_sequence

import baselines.pairs as pairs_module
from baselines.pairs import FramePairDataset, PairDataModule, frame_index
from freepoint_bench.data.readers.ply import write_ply
from freepoint_bench.data.readers.scannet_frames import read_frames, write_frame_folder, write_sens
from freepoint_bench.data.scene import Scene
from freepoint_bench.data.store import SceneStore
from freepoint_bench.data.views import ViewConfig, downsample_frame, frame_overlap
from freepoint_bench.engine.checkpoints import load_model, read_index
from freepoint_bench.engine.module import segmenter_from_preset
from freepoint_bench.engine.presets import get_preset
from freepoint_bench.errors import ConfigError, DataError
from freepoint_bench.harness.finetune import class_vocabulary, load_backbone
from freepoint_bench.harness.protocol import available_protocols, load_protocol
from freepoint_bench.harness.run import RunOptions, cell_config
from freepoint_bench.pretext.base import get_method

SCENES = ["scene0000_00", "scene0001_00"]


class NoTraining(Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        raise AssertionError("a finished run trained again")


@pytest.fixture(scope="module")
def frames_root(tmp_path_factory):
    """scene0000_00 as scans/<scene>/<scene>.sens, scene0001_00 as SensReader's export <scene>/ (another room)."""
    root = tmp_path_factory.mktemp("frames")
    camera, images = box_room_sequence(num_frames=76)
    write_sens(root / "scans" / SCENES[0] / f"{SCENES[0]}.sens", camera, images)
    camera, images = box_room_sequence(num_frames=76, high=(5.0, 4.0, 2.8))
    write_frame_folder(root / SCENES[1], camera, images)
    return root


def room_scan(path, every=5):
    frames = list(read_frames(path, every=every))
    return np.concatenate([f.world() for f in frames]).astype(np.float32), np.concatenate([f.rgb for f in frames])


@pytest.fixture(scope="module")
def store(frames_root, tmp_path_factory):
    """The scenes' reconstructed scans (the union of their frames) in a scene store."""
    store = SceneStore(tmp_path_factory.mktemp("cache") / "scannet-x")
    for name, path in ((SCENES[0], frames_root / "scans" / SCENES[0] / f"{SCENES[0]}.sens"),
                       (SCENES[1], frames_root / SCENES[1])):
        xyz, rgb = room_scan(path)
        store.save(Scene(name=name, xyz=xyz, rgb=rgb), split="train")
    return store


def frames_config(method, frames_root, **overrides):
    return get_method(method).default_config(
        "cpu-small", epochs=1, **{"views.source": "frames", "views.frames_root": str(frames_root), **overrides})


def test_frame_pairs_are_25_apart_overlap_and_their_matches_correspond(frames_root):
    config = frames_config("pointcontrast", frames_root, **{"views.jitter_sigma_m": 0.0})
    scenes = frame_index(SCENES, config.views)
    assert [s.name for s in scenes] == SCENES
    for scene in scenes:
        assert [r.number for r in scene.refs] == [0, 25, 50, 75]  # the originals' every 25th frame
        thinned = [downsample_frame(f, 0.05) for f in read_frames(scene.path, every=25, color=False)]
        expected = [(i, j) for i in range(4) for j in range(i + 1, 4)
                    if frame_overlap(thinned[i], thinned[j], 0.075, "max") >= 0.3]
        assert list(scene.pairs) == expected and 0 < len(expected) < 6  # 30 degrees of turn apart overlap, 90 not
    dataset = FramePairDataset(scenes, config.train, config.views, use_rgb=False)
    sample = dataset[(0, 1)]
    m = sample["matches"]
    assert len(m) > 50 and len(np.unique(m[:, 0])) == len(m) == len(np.unique(m[:, 1]))
    # undoing each view's recorded transform gives world points on the second room's walls (5 x 4 x 2.8 m)
    pair = dataset.pair(scenes[1], np.random.default_rng([config.train.seed, 0, 1]))
    for view in (pair.a, pair.b):
        inverse = np.linalg.inv(view.transform)
        world = view.xyz.astype(np.float64) @ inverse[:3, :3].T + inverse[:3, 3]
        walls = np.minimum(np.abs(world), np.abs(world - [5.0, 4.0, 2.8])).min(axis=1)
        assert walls.max() < 0.003
        assert np.abs(view.xyz - view.origin).max() > 0.5  # each view in its own augmented camera frame
    world_gap = np.linalg.norm(pair.a.origin[pair.matches[:, 0]] - pair.b.origin[pair.matches[:, 1]], axis=1)
    assert len(world_gap) > 50 and world_gap.max() <= config.views.match_radius_m
    assert np.all(sample["a_feats"][:, :3] == 0)  # geometry-only default


def test_frame_index_in_parallel_resumes_and_reselects_a_damaged_entry(frames_root, tmp_path, monkeypatch):
    config = frames_config("pointcontrast", frames_root)
    expected = frame_index(SCENES, config.views)  # in process, no cache
    calls = []
    index = tmp_path / "frames"
    parallel = frame_index(SCENES, config.views, index, workers=2,
                           progress=lambda *args: calls.append(args))
    assert parallel == expected  # two spawned workers select the same pairs, returned in the scenes' order
    assert sorted(calls) == [("frame pairs", 1, 2, calls[0][3]), ("frame pairs", 2, 2, calls[1][3])]
    assert {c[3] for c in calls} == set(SCENES)
    assert sorted(p.name for p in index.iterdir()) == [f"{name}.json" for name in SCENES]
    # an interrupted index: one scene's entry lost, the other's damaged; a third stays as written
    first = (index / f"{SCENES[0]}.json").read_text()
    (index / f"{SCENES[0]}.json").unlink()
    (index / f"{SCENES[1]}.json").write_text('{"path": ')
    selected = []
    real = pairs_module.select_pairs
    monkeypatch.setattr(pairs_module, "select_pairs", lambda seq, *a: selected.append(seq.name) or real(seq, *a))
    assert frame_index(SCENES, config.views, index, workers=1) == expected
    assert len(selected) == 2 and (index / f"{SCENES[0]}.json").read_text() == first
    selected.clear()
    assert frame_index(SCENES, config.views, index, workers=1) == expected and selected == []  # all cached now
    # other settings are another index entry: selected again
    other = frames_config("pointcontrast", frames_root, **{"views.frame_min_overlap": 0.2})
    frame_index(SCENES[:1], other.views, index, workers=1)
    assert len(selected) == 1
    with pytest.raises(ConfigError, match="workers must be >= 1"):
        frame_index(SCENES, config.views, index, workers=0)


def test_pointcontrast_on_frames_writes_a_checkpoint_finetuning_loads(store, frames_root, tmp_path, monkeypatch):
    method = get_method("pointcontrast")
    config = frames_config("pointcontrast", frames_root)
    run = tmp_path / "run"
    result = method.pretrain(store, config, run, checkpoints_dir=tmp_path / "ckpt")
    model, meta = load_model(result.backbone, part="backbone")
    assert meta["config"]["views"]["source"] == "frames" and meta["input"]["views"] == "frames"
    assert meta["data"]["scenes"] == SCENES and meta["metrics"]["train"]["steps"] == 1
    assert np.isfinite(meta["metrics"]["train"]["loss_history"][0])
    init = segmenter_from_preset(get_preset("cpu-small")).backbone.state_dict()
    assert any(not torch.equal(v, init[k]) for k, v in model.state_dict().items() if v.is_floating_point())
    assert read_index(tmp_path / "ckpt" / "index.json")["checkpoints"][meta["id"]]["method"] == "pointcontrast"
    cached = json.loads((run / "frames" / f"{SCENES[0]}.json").read_text())
    assert cached["settings"] == {"gap": 25, "min_overlap": 0.3, "voxel_m": 0.05, "radius_m": 0.075,
                                  "reduce": "max"} and cached["pairs"]
    for name in available_protocols()[:3]:
        spec = load_protocol(name)
        ft = cell_config(spec, RunOptions(preset="cpu-small"))
        segmenter = segmenter_from_preset(ft.train, num_classes=len(class_vocabulary(spec.eval)[0]))
        assert load_backbone(segmenter, result.backbone)["method"] == "pointcontrast"
    # a finished run resumes without training and without selecting pairs again (the index is cached)

    def no_selection(*args, **kwargs):
        raise AssertionError("pairs selected again")

    monkeypatch.setattr(pairs_module, "select_pairs", no_selection)
    data = method.build_run_data(store, SCENES, config, run)
    data.prepare_data()
    data.setup("fit")
    assert len(data.train_set) == 2
    again = method.pretrain(store, config, run, checkpoints_dir=tmp_path / "ckpt", resume=True,
                            callbacks=[NoTraining()])
    assert again.backbone == result.backbone


def test_csc_trains_on_frames_with_colour(store, frames_root, tmp_path):
    config = frames_config("csc", frames_root, num_partitions=4, **{"views.frame_min_overlap": 0.2})
    assert config.use_rgb
    result = get_method("csc").pretrain(store, config, tmp_path / "run", checkpoints_dir=tmp_path / "ckpt")
    _, meta = load_model(result.backbone, part="backbone")
    assert meta["config"]["views"]["frame_min_overlap"] == 0.2 and meta["input"]["rgb"] == "used"
    assert np.isfinite(meta["metrics"]["train"]["loss_history"][0])


def test_cli_pretrain_pointcontrast_on_frames(frames_root, tmp_path, capsys):
    from freepoint_bench.cli import main

    scans = tmp_path / "scans"
    scans.mkdir()
    for name, path in ((SCENES[0], frames_root / "scans" / SCENES[0] / f"{SCENES[0]}.sens"),
                       (SCENES[1], frames_root / SCENES[1])):
        write_ply(scans / f"{name}.ply", *room_scan(path, every=25))
    args = ["pretrain", "--method", "pointcontrast", "--dataset", "ply", "--root", scans, "--cache", tmp_path / "c",
            "--scene", SCENES[0], "--scene", SCENES[1], "--epochs", "1", "--set", "views.source=frames",
            "--set", f"views.frames_root={frames_root}", "--out", tmp_path / "run", "--checkpoints", tmp_path / "ckpt"]
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    assert int(exc.value.code or 0) == 0, capsys.readouterr().err
    (ckpt,) = (tmp_path / "ckpt").glob("pointcontrast-ply-*-backbone.ckpt")
    _, meta = load_model(ckpt, part="backbone")
    assert meta["config"]["views"]["frames_root"] == str(frames_root)
    # a scene without frames is one line naming it and the fix
    (scans / "scene0002_00.ply").write_bytes((scans / f"{SCENES[0]}.ply").read_bytes())
    args[args.index("--out") + 1] = tmp_path / "run2"
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in [*args, "--scene", "scene0002_00"]])
    err = capsys.readouterr().err
    assert int(exc.value.code) != 0 and "scene0002_00" in err and "frames_root" in err


def test_default_views_are_the_scene_views_and_record_no_frame_fields(store):
    for name in ("pointcontrast", "csc"):
        config = get_method(name).default_config("cpu-small")
        assert config.views.source == "scene"
        dumped = config.model_dump(mode="json")["views"]
        # the same record as before the frame mode: run records and checkpoint ids unchanged
        assert dumped == ViewConfig(**{k: v for k, v in dumped.items()}).model_dump(mode="json")
        assert "source" not in dumped and "frames_root" not in dumped
    data = PairDataModule(store, SCENES, get_preset("cpu-small"), get_method("pointcontrast").default_config().views)
    assert not data.frames and len(data.train_set) == 2


def test_frames_mode_refuses_a_missing_root_and_scenes_without_pairs(store, frames_root, tmp_path):
    config = frames_config("pointcontrast", tmp_path / "nowhere")
    with pytest.raises(DataError, match="not a folder"):
        frame_index(SCENES, config.views)
    strict = frames_config("pointcontrast", frames_root, **{"views.frame_min_overlap": 1.0})
    with pytest.raises(DataError, match="lower views.frame_gap"):
        frame_index(SCENES, strict.views)


def test_paper_preset_takes_the_frame_fields_and_keeps_the_originals_rule(frames_root):
    for name in ("pointcontrast", "csc"):
        config = get_method(name).default_config(
            "paper", **{"views.source": "frames", "views.frames_root": str(frames_root)})
        views = config.views
        assert config.train.backbone == "34C" and config.train.batch_size == 4
        assert (views.frame_gap, views.frame_min_overlap, views.frame_voxel_m, views.frame_overlap_m,
                views.frame_overlap_rule) == (25, 0.3, 0.05, 0.075, "max")
