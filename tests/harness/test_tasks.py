"""The probe ladder's tasks in the harness: frozen backbones stay bit-identical, semantic labels follow the unit,
semantic predictions score on every point."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stores import MemoryStore

from freepoint_bench.data.synthetic import SyntheticConfig, generate_room
from freepoint_bench.engine.checkpoints import save_model_checkpoint
from freepoint_bench.engine.module import segmenter_from_preset
from freepoint_bench.engine.semantic import FrozenSegmenterModule, SemanticModule
from freepoint_bench.errors import ConfigError
from freepoint_bench.harness.finetune import (
    ProtocolTargets,
    SemanticTargets,
    finetune_config,
    predict_semantic_scenes,
    score_semantic,
    segmentation_vocabulary,
    train_fold,
)
from freepoint_bench.harness.protocol import EvalRules

RULES = EvalRules(classes="s3dis")


@pytest.fixture(scope="module")
def store():
    return MemoryStore([generate_room(i, SyntheticConfig(num_points=1200), name=f"synth_{i:04d}") for i in range(3)])


@pytest.fixture(scope="module")
def config():
    return finetune_config("cpu-small", epochs=2, num_queries=8, batch_size=3, max_points=None)


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Returns a copy of every parameter and buffer (BatchNorm running statistics included)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _moved(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> list[str]:
    return [k for k in before if not torch.equal(before[k], after[k])]


def _pretrained_backbone(tmp_path, config) -> tuple:
    """Returns (a backbone checkpoint of random weights, those weights): the frozen backbone must keep them."""
    torch.manual_seed(123)
    backbone = segmenter_from_preset(config.train).backbone
    path = tmp_path / "backbone.ckpt"
    save_model_checkpoint(path, backbone, {"method": "test"})
    return path, _state(backbone)


@pytest.mark.parametrize("task", ["linear", "insseg-frozen"])
def test_a_frozen_backbone_is_bit_identical_after_training_while_the_head_learns(task, store, config, tmp_path):
    ckpt, loaded = _pretrained_backbone(tmp_path, config)
    semantic = task == "linear"
    targets = SemanticTargets(RULES) if semantic else ProtocolTargets(RULES)
    num_classes = len(segmentation_vocabulary(RULES)[0])
    module = (SemanticModule(config.train, num_classes) if semantic
              else FrozenSegmenterModule(config.train, config.loss, num_classes=num_classes))
    head = module.segmenter.head if semantic else module.segmenter.decoder
    head_before = _state(head)
    trained, _ = train_fold(store, store.names(), targets, config, num_classes=num_classes, init_backbone=ckpt,
                            seed=0, work_dir=tmp_path / "work", task=task)
    after = _state(trained.segmenter.backbone)
    assert not _moved(loaded, after), "the frozen backbone's weights or BatchNorm statistics moved"
    assert any("running_mean" in k for k in after)  # the check covers BatchNorm buffers
    assert not any(p.requires_grad for p in trained.segmenter.backbone.parameters())
    trained_head = trained.segmenter.head if semantic else trained.segmenter.decoder
    assert _moved(head_before, _state(trained_head)), "the head did not train"  # same seed: same initial head
    trained.train()
    assert not trained.segmenter.backbone.training  # Lightning's train mode leaves the frozen backbone in eval


def test_semseg_trains_the_backbone_end_to_end(store, config, tmp_path):
    ckpt, loaded = _pretrained_backbone(tmp_path, config)
    trained, _ = train_fold(store, store.names(), SemanticTargets(RULES), config, num_classes=13, init_backbone=ckpt,
                            seed=0, work_dir=tmp_path / "work", task="semseg")
    moved = _moved(loaded, _state(trained.segmenter.backbone))
    assert any("running_mean" in k for k in moved) and any(k.endswith("weight") for k in moved)


def test_a_task_given_the_other_kind_of_targets_is_refused(store, config, tmp_path):
    with pytest.raises(ConfigError, match="task 'linear' trains on SemanticTargets, not ProtocolTargets"):
        train_fold(store, store.names(), ProtocolTargets(RULES), config, num_classes=13, init_backbone=None,
                   seed=0, work_dir=tmp_path, task="linear")


def test_semantic_labels_follow_the_unit(store):
    scene = store.load("synth_0000")
    every = SemanticTargets(RULES)(scene)
    np.testing.assert_array_equal(every, scene.semantic)  # S3DIS: class index = semantic id, every point labelled
    names = scene.meta.get("instance_names")
    kept_ids = [0, 2]
    kept = [str(names[i]) if names is not None else str(i) for i in kept_ids]
    masks = SemanticTargets(RULES, {scene.name: kept})(scene)
    in_kept = np.isin(scene.instance, kept_ids)
    np.testing.assert_array_equal(masks[in_kept], scene.semantic[in_kept])
    assert (masks[~in_kept] == -1).all() and in_kept.any() and (~in_kept).any()


def test_semantic_scores_on_every_point(store, config):
    truth = {n: store.load(n).semantic.astype(np.int64) for n in store.names()}
    perfect = score_semantic(store, truth, RULES)
    assert perfect["miou"] == 1.0 and perfect["macc"] == 1.0 and perfect["all_acc"] == 1.0
    assert set(perfect["per_class"]) == set(segmentation_vocabulary(RULES)[1])
    torch.manual_seed(0)
    model = SemanticModule(config.train, 13).segmenter
    preds = predict_semantic_scenes(model, store, store.names(), config, device="cpu")
    assert all(len(p) == store.load(n).num_points for n, p in preds.items())
    scores = score_semantic(store, preds, RULES)
    assert 0.0 <= scores["miou"] < 1.0
