"""Dropped masks are ignored, never background: the loss equals the loss of the scene without their points."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from freepoint_bench.data.scene import Scene
from freepoint_bench.engine.data import Targets, collate, make_sample
from freepoint_bench.engine.presets import get_preset
from freepoint_bench.harness.finetune import ProtocolTargets
from freepoint_bench.harness.protocol import EvalRules
from freepoint_bench.models.criterion import SetCriterion, targets_from_instance_ids
from freepoint_bench.models.decoder import DecoderConfig
from freepoint_bench.models.losses import LossConfig
from freepoint_bench.models.segmenter import TINY, SegmenterConfig, build_segmenter
from freepoint_bench.models.voxels import SparseBatch

PRESET = get_preset("cpu-small", max_points=None, max_loss_points=None, voxel_size_m=0.1)


def _scene() -> Scene:
    """Three boxes of points side by side: instance 0 (table, S3DIS id 7), 1 (chair, 8), 2 (chair, 8)."""
    rng = np.random.default_rng(0)
    parts = [rng.random((300, 3), dtype=np.float32) * 0.8 + np.float32([1.2 * i, 0, 0]) for i in range(3)]
    xyz = np.concatenate(parts)
    return Scene(name="Area_1/room", xyz=xyz, rgb=rng.random((900, 3), dtype=np.float32),
                 semantic=np.repeat(np.array([7, 8, 8]), 300), instance=np.repeat(np.arange(3), 300),
                 meta={"dataset": "s3dis", "instance_names": ["table_1", "chair_1", "chair_2"]})


def _model_and_criterion():
    torch.manual_seed(0)
    config = SegmenterConfig(backbone=TINY.backbone.model_copy(update={"in_channels": 6}),
                             decoder=DecoderConfig(**{**TINY.decoder.model_dump(), "num_classes": 13}))
    return build_segmenter(config).eval(), SetCriterion(LossConfig(), num_classes=13)


def test_protocol_targets_ignore_dropped_masks_and_keep_classes():
    scene = _scene()
    t = ProtocolTargets(EvalRules(classes="s3dis"), kept={"Area_1/room": ["table_1", "chair_2"]})(scene)
    assert t.ignore.sum() == 300 and t.ignore[300:600].all()
    assert set(np.unique(t.instance)) == {-1, 0, 2}
    assert (t.semantic == scene.semantic).all()  # S3DIS class index = semantic id


def test_loss_with_a_dropped_instance_equals_loss_without_its_points():
    scene = _scene()
    model, criterion = _model_and_criterion()
    targets = ProtocolTargets(EvalRules(classes="s3dis"), kept={"Area_1/room": ["table_1", "chair_2"]})(scene)
    sample = make_sample(scene, PRESET, targets, rng=np.random.default_rng(0), train=False)
    batch = collate([sample])
    with torch.no_grad():
        out = model(batch["batch"])
    ignored = criterion(out, batch["targets"], batch["batch"])

    # the oracle, built by hand: the same network outputs, the chair's points deleted from the loss points
    keep = scene.instance != 1
    oracle_batch = SparseBatch(batch["batch"].coords, batch["batch"].feats,
                               [torch.from_numpy(sample["inverse"][keep])], [torch.from_numpy(sample["xyz"][keep])])
    oracle_targets = targets_from_instance_ids(torch.from_numpy(scene.instance[keep]),
                                               torch.from_numpy(scene.semantic[keep]))
    oracle = criterion(out, [oracle_targets], oracle_batch)
    for key in ("loss", "dice", "bce", "objectness", "class"):
        assert float(ignored[key]) == pytest.approx(float(oracle[key]), rel=1e-5, abs=1e-6), key

    # the wrong semantics (the dropped chair as background) give another loss: the test can tell them apart
    background = Targets(instance=np.where(scene.instance == 1, -1, scene.instance), semantic=scene.semantic)
    bg_batch = collate([make_sample(scene, PRESET, background, rng=np.random.default_rng(0), train=False)])
    as_background = criterion(out, bg_batch["targets"], bg_batch["batch"])
    assert abs(float(as_background["loss"]) - float(oracle["loss"])) > 1e-3


def test_a_mask_selection_frozen_from_other_data_is_refused():
    from freepoint_bench.errors import DataError

    targets = ProtocolTargets(EvalRules(classes="s3dis"), kept={"Area_1/room": ["table_1", "sofa_9"]})
    with pytest.raises(DataError, match=r"does not have \(\['sofa_9'\]\).*freeze it again"):
        targets(_scene())
