"""Checkpoint io of the engine: metadata, strict rebuild, the index, features and predictions."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from freepoint_bench.engine.checkpoints import (
    code_version,
    data_description,
    environment,
    input_metadata,
    load_model,
    publish_checkpoints,
    read_index,
    register_checkpoint,
    save_model_checkpoint,
)
from freepoint_bench.engine.features import BackboneFeatures, backbone_features
from freepoint_bench.engine.module import segmenter_from_preset
from freepoint_bench.engine.predict import predict
from freepoint_bench.engine.presets import get_preset
from freepoint_bench.errors import CheckpointError
from freepoint_bench.evaluation import read_predictions

PRESET = get_preset("cpu-small", voxel_size_m=0.15, num_queries=6)


@pytest.fixture
def saved(tmp_path, rooms):
    torch.manual_seed(0)
    model = segmenter_from_preset(PRESET)
    meta = {"method": "test", "input": input_metadata(PRESET), "data": data_description(rooms, rooms.names())}
    seg = save_model_checkpoint(tmp_path / "seg.ckpt", model, meta)
    bb = save_model_checkpoint(tmp_path / "bb.ckpt", model.backbone, meta)
    return model, seg, bb


def test_models_rebuild_strictly_from_their_checkpoints(saved):
    model, seg, bb = saved
    loaded, meta = load_model(seg, "segmenter")
    assert meta["part"] == "segmenter" and meta["architecture"] == model.architecture()
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    backbone, bmeta = load_model(bb, "backbone")
    assert bmeta["part"] == "backbone" and bmeta["architecture"] == model.backbone.architecture()
    from_seg, _ = load_model(seg, "backbone")
    for k, v in backbone.state_dict().items():
        assert torch.equal(from_seg.state_dict()[k], v)


def test_load_into_a_given_model_checks_part_and_architecture_and_leaves_its_mode(saved):
    model, seg, bb = saved
    for path in (seg, bb):  # a backbone from a backbone or from a segmenter checkpoint
        torch.manual_seed(1)
        target = segmenter_from_preset(PRESET).backbone.train()
        loaded, meta = load_model(path, "backbone", into=target)
        assert loaded is target and target.training and meta["architecture"] == torch.load(
            path, weights_only=True)["metadata"]["architecture"]
        for k, v in model.backbone.state_dict().items():
            assert torch.equal(target.state_dict()[k], v)
    built, _ = load_model(seg, into=lambda meta: segmenter_from_preset(PRESET))  # or built from the metadata
    assert all(torch.equal(built.state_dict()[k], v) for k, v in model.state_dict().items())
    with pytest.raises(CheckpointError, match="backbone, not a full segmenter"):
        load_model(bb, "segmenter", into=segmenter_from_preset(PRESET))
    other = segmenter_from_preset(get_preset("cpu-small", voxel_size_m=0.15, num_queries=4))
    with pytest.raises(CheckpointError, match="another architecture"):
        load_model(seg, "segmenter", into=other)


def test_wrong_or_broken_checkpoints_are_checkpoint_errors(saved, tmp_path):
    model, seg, bb = saved
    with pytest.raises(CheckpointError, match="backbone, not a full segmenter"):
        load_model(bb, "segmenter")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.ckpt"):
        backbone_features(tmp_path / "junk.ckpt", None)
    # weights that do not fit the recorded architecture (a hand-edited or foreign file)
    blob = torch.load(seg, weights_only=True)
    blob["metadata"]["model_config"]["decoder"]["num_queries"] = 3
    torch.save(blob, tmp_path / "edited.ckpt")
    with pytest.raises(CheckpointError, match="edited.ckpt"):
        load_model(tmp_path / "edited.ckpt")


def test_backbone_features_are_per_point_and_deterministic(saved, rooms):
    model, seg, bb = saved
    scene = rooms.load("room0")
    feats = backbone_features(bb, scene)
    assert feats.shape == (scene.num_points, model.backbone.out_channels) and feats.dtype == np.float32
    assert np.array_equal(feats, backbone_features(bb, scene))
    # points sharing a voxel share a feature
    q = np.floor((scene.xyz - scene.xyz.min(0)) / PRESET.voxel_size_m).astype(np.int64)
    _, first, inv = np.unique(q, axis=0, return_index=True, return_inverse=True)
    assert np.array_equal(feats, feats[first][inv.reshape(-1)])


def test_predict_writes_benchmark_files(saved, rooms, tmp_path):
    _, seg, _ = saved
    done = []
    written = predict(seg, rooms, rooms.names(), tmp_path / "preds", progress=lambda *a: done.append(a))
    assert len(written) == 2 and all(p.is_file() for p in written)
    assert [d[0] for d in done] == [1, 2]
    for name in rooms.names():
        scene = rooms.load(name)
        preds = read_predictions(tmp_path / "preds", name, scene.num_points)
        assert preds.masks.shape[1] == scene.num_points and len(preds) <= PRESET.num_queries
        assert np.all(np.diff(preds.scores) <= 1e-6)  # best first


def test_predict_with_superpoints_gives_unions_of_superpoints(saved, rooms, tmp_path):
    from freepoint_bench.geometry.superpoints import SuperpointConfig, superpoints
    from freepoint_bench.models.inference import InferenceConfig

    _, seg, _ = saved
    cfg = SuperpointConfig(min_size=10)
    # a barely trained model: a low threshold keeps some masks
    inference = InferenceConfig(mask_threshold=0.1, superpoints=cfg)
    predict(seg, rooms, rooms.names(), tmp_path / "preds", inference=inference)
    for name in rooms.names():
        scene = rooms.load(name)
        ids = superpoints(scene.xyz, cfg)
        preds = read_predictions(tmp_path / "preds", name, scene.num_points)
        assert len(preds) > 0
        for mask in preds.masks:  # every superpoint is wholly in or wholly out of every mask
            inside = np.bincount(ids[mask], minlength=ids.max() + 1)
            assert np.all((inside == 0) | (inside == np.bincount(ids)))


def test_index_entries_are_replaced_and_relative(tmp_path):
    index = tmp_path / "ckpts" / "index.json"
    files = {"backbone": tmp_path / "ckpts" / "a-backbone.ckpt"}
    register_checkpoint(index, "a", {"method": "m", "data": {"dataset": "x", "scenes": ["s"]}}, files)
    register_checkpoint(index, "a", {"method": "m2", "data": {}}, files)
    register_checkpoint(index, "b", {"method": "m", "data": {}}, files)
    data = read_index(index)
    assert set(data["checkpoints"]) == {"a", "b"}
    assert data["checkpoints"]["a"]["method"] == "m2"
    assert data["checkpoints"]["a"]["files"]["backbone"] == "a-backbone.ckpt"
    assert "scenes" not in json.dumps(data["checkpoints"]["a"]["data"])


def test_concurrent_index_writers_lose_no_entry(tmp_path):
    index = tmp_path / "index.json"
    threads = [
        threading.Thread(target=register_checkpoint, args=(index, f"run{i}", {"method": "m"}, {}))
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(read_index(index)["checkpoints"]) == {f"run{i}" for i in range(8)}


def test_corrupt_index_is_a_checkpoint_error(tmp_path):
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="index.json"):
        read_index(tmp_path / "index.json")


def test_code_version_names_the_package_version():
    v = code_version()
    assert v["version"] and (v["git_commit"] is None or len(v["git_commit"]) == 40)


def test_environment_names_what_decides_floating_point():
    env = environment()
    assert env["packages"]["torch"] == torch.__version__ and env["packages"]["numpy"] == np.__version__
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["torch_threads"] == torch.get_num_threads()
    assert (env["gpu"] is None) == (not torch.cuda.is_available())
    assert json.loads(json.dumps(env)) == env  # it goes into run.json and checkpoint metadata


def test_feature_function_for_pseudo_labels(saved, rooms, tmp_path):
    import pickle

    model, seg, bb = saved
    fn = BackboneFeatures(bb)
    scene = rooms.load("room1")
    assert np.array_equal(fn(scene), backbone_features(bb, scene))
    clone = pickle.loads(pickle.dumps(fn))  # process-pool workers get a copy without the loaded model
    assert clone._loaded is None and np.array_equal(clone(scene), fn(scene))
    assert fn.cache_key != BackboneFeatures(seg).cache_key
    with pytest.raises(CheckpointError, match="nope.ckpt"):
        BackboneFeatures(tmp_path / "nope.ckpt")


def publish_checkpoints_wrote(*args) -> bool:
    return publish_checkpoints(*args)[1]


def test_publishing_the_same_pretraining_again_writes_nothing(tmp_path, rooms):
    torch.manual_seed(0)
    model = segmenter_from_preset(PRESET)
    meta = {"method": "test", "input": input_metadata(PRESET), "data": data_description(rooms, rooms.names()),
            "metrics": {"step1": {"loss": 1.0}}, "code_version": "a"}
    parts = {"backbone": (tmp_path / "x-backbone.ckpt", model.backbone), "segmenter": (tmp_path / "x-seg.ckpt", model)}
    assert publish_checkpoints_wrote(tmp_path, "x", meta, parts)
    index = tmp_path / "index.json"
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in [index, *(v[0] for v in parts.values())]}
    # the same weights and metadata (another code version resuming): nothing rewritten, the index untouched
    assert not publish_checkpoints_wrote(tmp_path, "x", {**meta, "code_version": "b"}, parts)
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in before} == before
    assert load_model(parts["backbone"][0], part="backbone")[1]["code_version"] == "a"
    # ... and the metadata returned is the kept files': the code version that trained them
    assert publish_checkpoints(tmp_path, "x", {**meta, "code_version": "b"}, parts)[0]["code_version"] == "a"
    # other metrics, other weights or a damaged file: written again, and the index follows
    assert publish_checkpoints_wrote(tmp_path, "x", {**meta, "metrics": {"step1": {"loss": 2.0}}}, parts)
    assert read_index(index)["checkpoints"]["x"]["metrics"] == {"step1": {"loss": 2.0}}
    meta2 = {**meta, "metrics": {"step1": {"loss": 2.0}}}
    with torch.no_grad():
        next(model.backbone.parameters()).add_(1.0)
    ino = {k: p.stat().st_ino for k, (p, _) in parts.items()}
    assert publish_checkpoints_wrote(tmp_path, "x", meta2, parts)
    assert all(p.stat().st_ino != ino[k] for k, (p, _) in parts.items())  # the segmenter holds the backbone too
    seg = parts["segmenter"][0]
    seg.write_bytes(seg.read_bytes()[:-100])
    assert publish_checkpoints_wrote(tmp_path, "x", meta2, parts)
    load_model(seg, part="segmenter")
    # a missing index entry is registered again even when both files are kept
    index.unlink()
    assert publish_checkpoints_wrote(tmp_path, "x", meta2, parts)
    assert set(read_index(index)["checkpoints"]) == {"x"}

