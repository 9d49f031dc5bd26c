"""The S3DIS probe rungs' recipes are Pointcept's (Pointcept/Pointcept), value by value, as the table below reads them
off the released configs; the budgets are Pointcept's epochs converted to optimiser steps at its batch, computed here
from its trainer's rule and the rungs' own room counts."""

from __future__ import annotations

import json
import math

import pytest

from freepoint_bench.harness.finetune import finetune_config
from freepoint_bench.harness.protocol import PROTOCOLS_DIR, load_protocol

LIN = "configs/sonata/semseg-sonata-v1m1-3a-s3dis-lin.py"  # Pointcept's S3DIS linear probe (commit 31f1768c)
FT = "configs/sonata/semseg-sonata-v1m1-3c-s3dis-ft.py"  # Pointcept's S3DIS fine-tuning (commit 31f1768c)
TRANSFORMS = "pointcept/datasets/transform.py"  # what each augmentation of those configs draws

# (FinetuneConfig field path, value, the Pointcept file it is read from); both configs' optimisation and augmentation
# lines are the same but for the learning rate
COMMON = [
    ("train.batch_size", 24, "batch_size = 24"),
    ("train.weight_decay", 0.02, "optimizer AdamW weight_decay=0.02"),
    ("train.schedule", "onecycle", "scheduler OneCycleLR"),
    ("train.onecycle_pct_start", 0.05, "scheduler pct_start=0.05"),
    ("train.grad_clip", 3.0, "clip_grad = 3.0"),
    ("train.voxel_size_m", 0.02, "GridSample grid_size=0.02"),
    ("train.augment.rotate_z", True, "RandomRotate angle=[-1, 1] axis z"),
    ("train.augment.tilt_max_rad", math.pi / 64, "RandomRotate angle=[-1/64, 1/64] axis x, axis y"),
    ("train.augment.scale_min", 0.9, "RandomScale scale=[0.9, 1.1]"),
    ("train.augment.scale_max", 1.1, "RandomScale scale=[0.9, 1.1]"),
    ("train.augment.scale_per_axis", False, "RandomScale anisotropic=False (its default)"),
    ("train.augment.flip_xy", True, "RandomFlip p=0.5 (x, then y)"),
    ("train.augment.jitter_sigma_m", 0.005, "RandomJitter sigma=0.005"),
    ("train.augment.elastic", ((0.2, 0.4), (0.8, 1.6)), "ElasticDistortion distortion_params"),
    ("train.augment.elastic_p", 0.95, f"{TRANSFORMS}: ElasticDistortion applies with random() < 0.95"),
    ("train.augment.rgb_shift", 0.05, f"ChromaticTranslation ratio=0.05 ({TRANSFORMS}: (rand - .5) * 255 * 2 * ratio)"),
    ("train.augment.color_jitter", 0.05, f"ChromaticJitter std=0.05 ({TRANSFORMS}: randn * std * 255)"),
    ("train.augment.brightness", 0.0, "no brightness / contrast transform"),
    ("train.augment.contrast", 0.0, "no brightness / contrast transform"),
]
TABLE = {
    "s3dis-linear": (LIN, [("train.lr", 0.002, "optimizer AdamW lr=0.002, OneCycle max_lr 0.002 (head)")] + COMMON),
    # one rate for every parameter: the backbone blocks' (param_dicts keyword "block"), not the head's 0.002
    "s3dis-10pct-scenes-semseg": (FT, [("train.lr", 0.0002, 'param_dicts keyword "block" lr=0.0002')] + COMMON),
    "s3dis-20pct-scenes-semseg": (FT, [("train.lr", 0.0002, 'param_dicts keyword "block" lr=0.0002')] + COMMON),
}
# Pointcept's loop: epoch 3000 in eval_epoch 100 passes (configs/_base_/default_runtime.py); default_config_parser
# (pointcept/engines/defaults.py) loops the data epoch // eval_epoch times per pass, and engines/train.py runs
# eval_epoch passes of a drop_last loader: floor(rooms x loop / batch) steps each
EPOCH, EVAL_EPOCH, BATCH = 3000, 100, 24


def pointcept_steps(rooms: int) -> int:
    return (rooms * (EPOCH // EVAL_EPOCH) // BATCH) * EVAL_EPOCH


def training_rooms(name: str) -> int:
    """Returns the rooms a rung trains on, counted from the shipped room list or its committed split."""
    spec = load_protocol(name)
    if spec.unit == "full":  # every room of the training areas: S3DIS's room list (Area_N/<room> rows)
        rows = (PROTOCOLS_DIR / "splits" / "s3dis-rooms.txt").read_text().splitlines()
        return sum(1 for row in rows if row.split("/")[0] in spec.train_groups)
    return len(json.loads((PROTOCOLS_DIR / spec.split_file).read_text())["train_scenes"])


def value_at(config, path: str):
    node = config
    for part in path.split("."):
        node = getattr(node, part)
    return node


@pytest.mark.parametrize("name", sorted(TABLE))
def test_a_probe_rung_carries_pointcepts_values(name):
    source, rows = TABLE[name]
    spec = load_protocol(name)
    config = finetune_config(spec.preset, **spec.overrides)
    for path, expected, where in rows:
        got = value_at(config, path)
        assert got == pytest.approx(expected) if isinstance(expected, float) else got == expected, \
            (name, path, got, expected, f"{source}: {where}")
    # the protocol's comment names the config its values come from
    assert source in (PROTOCOLS_DIR / f"{name}.toml").read_text()


@pytest.mark.parametrize(("name", "rooms", "steps"), [
    # by hand: 204 x 30 = 6,120 samples, 255 steps of 24, x 100; 20 x 30 = 600, 25 steps; 41 x 30 = 1,230, 51 steps
    ("s3dis-linear", 204, 25_500),
    ("s3dis-10pct-scenes-semseg", 20, 2_500),
    ("s3dis-20pct-scenes-semseg", 41, 5_100),
])
def test_a_probe_rungs_budget_is_pointcepts_epochs_in_steps(name, rooms, steps):
    spec = load_protocol(name)
    config = finetune_config(spec.preset, **spec.overrides)
    assert training_rooms(name) == rooms
    assert pointcept_steps(rooms) == steps
    assert config.max_steps == steps and config.steps(rooms) == steps


def test_the_frozen_decoder_probe_keeps_the_paper_recipe():
    """The frozen-backbone instance rung trains Mask3D's decoder: Pointcept's probe of the kind trains PointGroup's
    head at rates tuned for it (configs/sonata/insseg-sonata-v1m1-3a-s3dis-pg-lin.py), so the rung keeps Mask3D's
    recipe and says why."""
    spec = load_protocol("s3dis-10pct-masks-frozen")
    assert spec.overrides == {}
    assert finetune_config(spec.preset) == finetune_config("paper")
    assert "insseg-sonata-v1m1-3a-s3dis-pg-lin.py" in (PROTOCOLS_DIR / "s3dis-10pct-masks-frozen.toml").read_text()
