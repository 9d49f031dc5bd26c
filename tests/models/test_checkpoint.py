"""Checkpoints: round trip, strict keys, architecture and backend mismatches are CheckpointErrors."""

from __future__ import annotations

import pytest
import torch

from freepoint_bench.errors import CheckpointError, ConfigError
from freepoint_bench.models.backbone import build_backbone
from freepoint_bench.models.checkpoint import load_checkpoint, load_into, save_checkpoint
from freepoint_bench.models.segmenter import TINY, InstanceSegmenter, SegmenterConfig
from freepoint_bench.models.sparse import get_backend


def test_round_trip_restores_every_tensor(tmp_path):
    torch.manual_seed(0)
    model = InstanceSegmenter(TINY)
    path = save_checkpoint(tmp_path / "ckpt" / "model.pt", model, {"method": "freepoint", "epoch": 3})
    assert not list(path.parent.glob("*.tmp"))  # atomic: no temp file left behind
    state, meta = load_checkpoint(path, expected_architecture=model.architecture())
    assert meta["method"] == "freepoint" and meta["architecture"] == model.architecture()
    torch.manual_seed(1)
    fresh = InstanceSegmenter(TINY)
    load_into(fresh, state, meta, path=path)
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k


def test_wrong_architecture_is_named(tmp_path):
    model = InstanceSegmenter(TINY)
    path = save_checkpoint(tmp_path / "m.pt", model, {})
    other = SegmenterConfig(backbone=TINY.backbone, decoder=TINY.decoder.model_copy(update={"num_classes": 13}))
    with pytest.raises(CheckpointError, match=r"num_classes=0 in the checkpoint, 13 expected"):
        load_checkpoint(path, expected_architecture=InstanceSegmenter(other).architecture())
    state, meta = load_checkpoint(path)
    with pytest.raises(CheckpointError, match="recorded architecture"):
        load_into(InstanceSegmenter(other), state, meta)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    model = build_backbone(preset="tiny")
    state, meta = load_checkpoint(save_checkpoint(tmp_path / "b.pt", model, {}))
    state.pop("stem.0.weight")
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"missing keys \['stem.0.weight'\].*unexpected keys \['extra.weight'\]"):
        load_into(build_backbone(preset="tiny"), state, meta)


def test_missing_or_corrupt_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(bad)


def test_backend_change_needs_consent_and_then_loads(tmp_path):
    try:
        get_backend("minkowski")
    except ConfigError as exc:
        pytest.skip(f"MinkowskiEngine not importable: {exc}")
    sp = build_backbone(preset="tiny", backend="spconv")
    state, meta = load_checkpoint(save_checkpoint(tmp_path / "sp.pt", sp, {}))
    me = build_backbone(preset="tiny", backend="minkowski")
    with pytest.raises(CheckpointError, match="backend='spconv' in the checkpoint, 'minkowski' expected"):
        load_into(me, state, meta)
    load_into(me, state, meta, allow_backend_change=True)
    assert torch.equal(me.state_dict()["stem.0.weight"], sp.state_dict()["stem.0.weight"])
