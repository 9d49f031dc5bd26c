"""The scratch and supervised baselines: checkpoints that load like FreePoint's, falling loss, recorded scenes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from stores import MemoryStore

from baselines.supervised import (
    PAPER_BUDGET,
    SemanticDataset,
    class_lookup,
    point_classes,
    semantic_probe,
)
from freepoint_bench.data.scene import Scene
from freepoint_bench.data.synthetic import SyntheticConfig, generate_room
from freepoint_bench.engine.checkpoints import load_model, read_index
from freepoint_bench.engine.module import segmenter_from_preset
from freepoint_bench.engine.presets import get_preset
from freepoint_bench.engine.semantic import voxel_labels
from freepoint_bench.errors import ConfigError, DataError
from freepoint_bench.evaluation.semantic import confusion, miou
from freepoint_bench.models.backbone import Res16UNet
from freepoint_bench.pretext.base import get_method
from freepoint_bench.pretext.training import run_epochs

NO_AUGMENT = {"augment.rotate_z": False, "augment.flip_xy": False, "augment.jitter_sigma_m": 0.0,
              "augment.color_jitter": 0.0, "augment.scale_min": 1.0, "augment.scale_max": 1.0}


@pytest.fixture(scope="module")
def synthetic() -> MemoryStore:
    config = SyntheticConfig(num_points=3000)
    return MemoryStore([generate_room(seed, config, name=f"synth_{seed:04d}") for seed in (0, 1)])


def split_room(name: str, seed: int) -> Scene:
    """Returns a floor (class 1, grey) with two boxes: class 0 red, class 2 blue (an easy, learnable labelling)."""
    rng = np.random.default_rng(seed)
    floor = np.c_[rng.uniform(0, 3, (800, 2)), np.zeros(800)]
    a = np.array([0.3, 0.3, 0.0]) + rng.uniform(0, 1, (500, 3)) * [0.8, 0.8, 0.6]
    b = np.array([1.8, 1.6, 0.0]) + rng.uniform(0, 1, (500, 3)) * [0.8, 0.8, 0.9]
    rgb = np.r_[np.full((800, 3), 0.5), np.tile([0.9, 0.1, 0.1], (500, 1)), np.tile([0.1, 0.1, 0.9], (500, 1))]
    sem = np.r_[np.full(800, 1), np.full(500, 0), np.full(500, 2)]
    return Scene(name=name, xyz=np.r_[floor, a, b].astype(np.float32), rgb=rgb.astype(np.float32), semantic=sem)


# ---------------------------------------------------------------------------------------------- label helpers


def test_voxel_labels_is_the_majority_of_labelled_points():
    labels = np.array([2, 2, 1, -1, -1, -1, 0, 1, 1, 0, -1])
    inverse = np.array([0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 3])
    # voxel 0: 2,2,1 (-1 ignored) → 2; voxel 1: only -1 → -1; voxel 2: 0,1 tie → 0; voxel 3: 1,0 tie → 0
    assert voxel_labels(labels, inverse, 4).tolist() == [2, -1, 0, 0]
    rng = np.random.default_rng(0)
    labels, inverse = rng.integers(-1, 5, 500), rng.integers(0, 40, 500)
    got = voxel_labels(labels, inverse, 40)
    for v in range(40):  # brute force
        votes = labels[(inverse == v) & (labels >= 0)]
        assert got[v] == (np.bincount(votes).argmax() if len(votes) else -1)


def test_point_classes_maps_ids_and_ignores_the_rest():
    lookup = class_lookup([1, 2, 39])
    assert point_classes(np.array([1, 39, 2, 0, -1, 40, 100, 5]), lookup).tolist() == [0, 2, 1, -1, -1, -1, -1, -1]


def test_miou_by_hand():
    truth = np.array([0, 0, 0, 1, 1, 2, -1])
    pred = np.array([0, 0, 1, 1, 2, 2, 0])
    conf = confusion(truth, pred, 4)
    score, iou = miou(conf)
    # class 0: TP 2, FN 1, FP 0 → 2/3; class 1: TP 1, FP 1, FN 1 → 1/3; class 2: TP 1, FP 1 → 1/2; class 3 absent
    assert iou[:3] == pytest.approx([2 / 3, 1 / 3, 1 / 2]) and math.isnan(iou[3])
    assert score == pytest.approx((2 / 3 + 1 / 3 + 1 / 2) / 3)
    assert miou(confusion(truth, np.where(truth < 0, 0, truth), 4))[0] == 1.0  # perfect prediction


def test_dataset_labels_follow_the_scene(synthetic):
    preset = get_preset("cpu-small", **NO_AUGMENT)
    ds = SemanticDataset(synthetic, synthetic.names(), preset, tuple(range(13)))
    sample = ds[(0, 0)]
    scene = synthetic.load(synthetic.names()[0])
    truth = scene.semantic[sample["point_index"]]
    assert len(sample["labels"]) == len(sample["coords"])
    assert set(np.unique(sample["labels"])) <= set(np.unique(truth))
    assert voxel_labels(truth, sample["inverse"], len(sample["coords"])).tolist() == sample["labels"].tolist()


# ---------------------------------------------------------------------------------------------- scratch


def test_scratch_writes_a_seeded_backbone_like_freepoints(tmp_path, synthetic):
    method = get_method("scratch")
    cfg = method.default_config("cpu-small", seed=4)
    a = method.pretrain(synthetic, cfg, tmp_path / "run-a", names=synthetic.names(), checkpoints_dir=tmp_path / "ck")
    b = method.pretrain(synthetic, cfg, tmp_path / "run-b", checkpoints_dir=tmp_path / "ck2", devices="2")
    model_a, meta = load_model(a.backbone, part="backbone")
    model_b, _ = load_model(b.backbone, part="backbone")
    assert isinstance(model_a, Res16UNet)
    assert meta["method"] == "scratch" and meta["data"]["scenes"] == [] and meta["data"]["num_scenes"] == 0
    assert meta["id"].startswith(f"scratch-{meta['data']['dataset']}-")
    assert a.backbone.name == f"{meta['id']}-backbone.ckpt"
    assert meta["id"] in read_index(tmp_path / "ck" / "index.json")["checkpoints"]
    sa, sb = model_a.state_dict(), model_b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # seeded: deterministic
    # the very backbone FreePoint's segmenter starts from with this preset and seed
    torch.manual_seed(4)
    fp = segmenter_from_preset(get_preset("cpu-small", seed=4)).backbone
    assert fp.architecture() == model_a.architecture()
    assert all(torch.equal(fp.state_dict()[k], sa[k]) for k in sa)
    other = method.pretrain(synthetic, method.default_config("cpu-small", seed=5), tmp_path / "run-c",
                            checkpoints_dir=tmp_path / "ck")
    assert not torch.equal(load_model(other.backbone, part="backbone")[0].stem[0].weight, model_a.stem[0].weight)


# ---------------------------------------------------------------------------------------------- supervised


def test_supervised_one_epoch_on_two_synthetic_scenes(tmp_path, synthetic):
    method = get_method("supervised")
    cfg = method.default_config("cpu-small", epochs=1)
    result = method.pretrain(synthetic, cfg, tmp_path / "run", names=synthetic.names(),
                             checkpoints_dir=tmp_path / "ck", label_workers=3)
    model, meta = load_model(result.backbone, part="backbone")
    torch.manual_seed(0)
    assert model.architecture() == segmenter_from_preset(get_preset("cpu-small")).backbone.architecture()
    assert meta["method"] == "supervised" and meta["data"]["scenes"] == synthetic.names()
    assert meta["data"]["dataset"] == "synthetic" and meta["config"]["classes"] == list(range(13))
    assert meta["id"].startswith("supervised-synthetic-") and meta["input"]["use_xyz_features"] is True
    assert math.isfinite(meta["metrics"]["train"]["loss_first_epoch"])
    assert meta["id"] in read_index(tmp_path / "ck" / "index.json")["checkpoints"]
    # a second start in the same folder must choose: resume (same settings) publishes the finished run
    with pytest.raises(ConfigError, match="already holds"):
        method.pretrain(synthetic, cfg, tmp_path / "run", checkpoints_dir=tmp_path / "ck")
    with pytest.raises(ConfigError, match="config.epochs"):
        method.pretrain(synthetic, method.default_config("cpu-small", epochs=2), tmp_path / "run", resume=True,
                        checkpoints_dir=tmp_path / "ck")
    again = method.pretrain(synthetic, cfg, tmp_path / "run", resume=True, checkpoints_dir=tmp_path / "ck")
    assert again.backbone == result.backbone


def test_supervised_loss_falls_and_the_probe_beats_a_constant(tmp_path):
    store = MemoryStore([split_room("a", 0), split_room("b", 1), split_room("held", 2)], dataset="boxes")
    method = get_method("supervised")
    cfg = method.default_config("cpu-small", epochs=8, voxel_size_m=0.1, batch_size=2, **{"optim.lr": 0.05},
                                **{"optim.schedule": "constant"}, **NO_AUGMENT)
    result = method.pretrain(store, cfg, tmp_path / "run", names=["a", "b"], checkpoints_dir=tmp_path / "ck")
    meta = result.metadata
    assert meta["config"]["classes"] == [0, 1, 2]  # an unknown dataset: the ids found in the training scans
    assert meta["data"]["scenes"] == ["a", "b"]
    history = meta["metrics"]["train"]["loss_history"]
    assert len(history) == 8 and history[-1] < 0.5 * history[0], history
    done = json.loads((tmp_path / "run" / "train" / "done.json").read_text())
    assert done["loss_history"] == history
    probe = semantic_probe(tmp_path / "run" / "train" / "segmentation.ckpt", store, ["held"])
    # the constant predictor (floor everywhere: 800 of 1800 points) scores 0.44 / 3
    assert probe["constant_class"] == 1 and probe["constant_miou"] == pytest.approx(800 / 1800 / 3)
    assert probe["miou"] > 0.6 > 4 * probe["constant_miou"], probe  # seen: 0.77 vs 0.15


def test_supervised_refuses_unlabelled_scenes_and_bad_config(tmp_path):
    bare = Scene(name="bare", xyz=np.random.default_rng(0).uniform(0, 2, (500, 3)).astype(np.float32),
                 rgb=np.full((500, 3), 0.5, dtype=np.float32))
    method = get_method("supervised")
    with pytest.raises(DataError, match="bare: no semantic labels"):
        method.pretrain(MemoryStore([bare]), method.default_config("cpu-small", epochs=1), tmp_path / "run",
                        checkpoints_dir=tmp_path / "ck")
    assert method.default_config("cpu-small", epochs=3).epochs == 3  # the CLI's --epochs
    with pytest.raises(ConfigError, match="does not read training preset field 'epochs1': it trains in one stage"):
        method.default_config("cpu-small", epochs1=3)  # was silently taken as epochs
    with pytest.raises(ConfigError, match="unknown training preset"):
        method.default_config("huge")
    with pytest.raises(ConfigError, match="head"):
        method.default_config("cpu-small", head="transformer")
    paper = method.default_config("paper")
    assert paper.train.backbone == "34C" and paper.budget == PAPER_BUDGET and run_epochs(paper, 1201) == 800
    assert (paper.optim.lr, paper.optim.momentum, paper.optim.schedule) == (0.1, 0.9, "poly")  # CSC's PolyLR


def test_supervised_interrupted_run_resumes_and_its_head_checkpoint_matches(tmp_path, synthetic):
    from pytorch_lightning.callbacks import Callback

    from baselines.supervised import load_segmentation

    class Stop(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                raise RuntimeError("simulated interruption")  # after epoch 0's last.ckpt

    method = get_method("supervised")
    cfg = method.default_config("cpu-small", epochs=2, batch_size=1, head="mlp")
    with pytest.raises(RuntimeError, match="simulated"):
        method.pretrain(synthetic, cfg, tmp_path / "run", checkpoints_dir=tmp_path / "ck", callbacks=[Stop()])
    assert not (tmp_path / "run" / "train" / "segmentation.ckpt").exists()
    result = method.pretrain(synthetic, cfg, tmp_path / "run", checkpoints_dir=tmp_path / "ck", resume=True)
    assert len(result.metadata["metrics"]["train"]["loss_history"]) == 2
    segmenter, meta = load_segmentation(tmp_path / "run" / "train" / "segmentation.ckpt")
    backbone, _ = load_model(result.backbone, part="backbone")
    assert meta["architecture"]["head"] == "mlp" and meta["config"]["classes"] == list(range(13))
    ours, theirs = segmenter.backbone.state_dict(), backbone.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)  # the published backbone is the probe's
