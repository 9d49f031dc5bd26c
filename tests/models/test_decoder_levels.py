"""The backbone levels the decoder's cross-attention reads (issue 29 item 4). Mask3D's hlevels [0, 1, 2, 3]
(conf/model/mask3d.yaml) index its Res16UNet's feature_maps, strides 16, 8, 4, 2, 1 (JonasSchult/Mask3D
models/res16unet.py forward; models/mask3d.py forward reads aux[hlevel] and takes its masks from the stride-1 output):
TrainPreset.attention_levels="16-2" (BackboneConfig.bottleneck_level) gives that choice; the default "8-1" keeps
strides 8, 4, 2, 1 and every weight, output and record as they were."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from test_decoder_sampling import _attention_by_hand

from freepoint_bench.engine.checkpoints import load_model, save_model_checkpoint
from freepoint_bench.engine.module import segmenter_config, segmenter_from_preset
from freepoint_bench.engine.presets import get_preset
from freepoint_bench.errors import CheckpointError
from freepoint_bench.models.backbone import BackboneConfig, Res16UNet
from freepoint_bench.models.checkpoint import weights_sha256
from freepoint_bench.models.decoder import DecoderConfig, normalise_positions, position_frame
from freepoint_bench.models.segmenter import TINY, InstanceSegmenter, SegmenterConfig
from freepoint_bench.models.voxels import collate

VOXEL = 0.05
THRESHOLD = 0.7
MASK3D = (16, 8, 4, 2)  # the strides Mask3D's hlevels [0, 1, 2, 3] pick
# The tiny segmenter of the default levels (torch.manual_seed(0), TINY) as it was before attention_levels existed
# (commit 9c16d30): the sha256 of its state dict's keys and shapes, of its weights (models.checkpoint.weights_sha256),
# and per output of _outputs (eval mode, _batch) its sum and the mean of its entries times their flat index.
REFERENCE_KEYS = "b423bf6a679ce71de92a81c9ed6af0b2ceb66ffd5bc8eb8fe90b08c7fcdf0050"
REFERENCE_WEIGHTS = "68f7408aae8f501a8c546b8035f743ca92b6352f7f704ae446b219c4b88e803c"
REFERENCE_OUTPUTS = [
    (-437.255388, -218.600387),
    (-148.235508, -74.008871),
    (-16.346741, -7.668583),
    (-1045.322644, -522.636284),
    (-349.511904, -174.644420),
    (-10.327158, -4.851513),
    (-983.630459, -491.760732),
    (-329.912754, -164.845803),
    (-7.084454, -3.331411),
    (-1396.795548, -698.211474),
    (-469.754584, -234.745226),
    (-7.386929, -3.472266),
]


def _batch():
    rng = np.random.default_rng(0)
    xyz = [rng.uniform(0, [3, 2, 1], (n, 3)).astype(np.float32) for n in (600, 200)]
    return collate(xyz, [rng.uniform(0, 1, x.shape).astype(np.float32) for x in xyz], voxel_size=VOXEL)


def _model(bottleneck: bool, num_decoders: int = 2, **decoder) -> InstanceSegmenter:
    torch.manual_seed(0)
    backbone = TINY.backbone.model_copy(update={"bottleneck_level": bottleneck})
    config = DecoderConfig(**{**TINY.decoder.model_dump(), "num_decoders": num_decoders, **decoder})
    return InstanceSegmenter(SegmenterConfig(backbone=BackboneConfig.model_validate(backbone.model_dump()),
                                             decoder=config))


def _outputs(model, batch) -> list[torch.Tensor]:
    out = model(batch)
    return [t for p in [*out.aux, out.final] for t in [*p.masks, p.objectness]]


def _keys_sha(model) -> str:
    return hashlib.sha256(repr([(k, tuple(v.shape)) for k, v in model.state_dict().items()]).encode()).hexdigest()


def _level_counts(batch, b: int) -> list[int]:
    """Returns scene b's voxel counts at Mask3D's strides, from the input coordinates alone (distinct coords // s)."""
    coords = batch.coords[batch.coords[:, 0] == b, 1:].numpy()
    return [len(np.unique(coords // s, axis=0)) for s in MASK3D]


def test_default_levels_keep_the_weights_outputs_and_records_of_before():
    batch = _batch()
    model = _model(False, num_decoders=TINY.decoder.num_decoders).eval()
    assert _keys_sha(model) == REFERENCE_KEYS
    assert weights_sha256(model.state_dict()) == REFERENCE_WEIGHTS
    with torch.no_grad():
        outs = _outputs(model, batch)
    got = [(float(t.double().sum()), float((t.double().flatten() * torch.arange(t.numel())).sum() / t.numel()))
           for t in outs]
    np.testing.assert_allclose(got, REFERENCE_OUTPUTS, rtol=1e-5)
    assert [lvl.stride for lvl in model.backbone(batch.coords, batch.feats).levels] == [8, 4, 2, 1]
    assert "attended_strides" not in model.architecture()
    assert "bottleneck_level" not in model.config.backbone.model_dump(mode="json")
    preset = get_preset("cpu-small")
    assert preset.attention_levels == "8-1" and "attention_levels" not in preset.model_dump(mode="json")
    assert not segmenter_config(preset).backbone.bottleneck_level


def _stages(model, batch):
    """Returns ({stride: (feats, coords)} of the backbone stages block4 (16) to block7 (2), read by hooks on the
    stages themselves, not from BackboneOutput), the cross-attention calls [(args, output)], the segmenter output."""
    backend, stages, calls = model.backbone.backend, {}, []
    hooks = [getattr(model.backbone, f"block{i}").register_forward_hook(
        lambda _m, _a, out, s=s: stages.__setitem__(s, (backend.features(out), backend.coords(out))))
        for i, s in zip((4, 5, 6, 7), MASK3D, strict=True)]
    hooks += [layer.register_forward_hook(lambda _m, args, out: calls.append((args, out)))
              for layer in model.decoder.cross_attention]
    try:
        out = model(batch)
    finally:
        for h in hooks:
            h.remove()
    return stages, calls, out


def _blocked_by_hand(mask_logits: torch.Tensor, fine: torch.Tensor, level: torch.Tensor, stride: int) -> torch.Tensor:
    """Returns (Q, K) True where a query's mean mask probability over the input voxels inside a level voxel is below
    THRESHOLD, found voxel by voxel (a row blocked everywhere attends everything)."""
    probs = mask_logits.sigmoid()
    rows = {tuple(c): i for i, c in enumerate(level.tolist())}
    members: list[list[int]] = [[] for _ in rows]
    for j, c in enumerate((fine // stride).tolist()):
        members[rows[tuple(c)]].append(j)
    blocked = torch.stack([probs[:, m].mean(1) < THRESHOLD for m in members], dim=1)
    return blocked & ~blocked.all(1, keepdim=True)


def test_mask3d_levels_attend_strides_16_to_2_by_a_dense_reference():
    """Each cross-attention reads exactly the projected features of every voxel of its level (stride 16, 8, 4, 2 in
    turn, taken from the backbone stages' own outputs), their positions, and a threshold mask computed here from the
    previous step's full-resolution masks; its output equals attention written out over those keys."""
    batch = _batch()
    model = _model(True, attn_mask_threshold=THRESHOLD).eval()
    with torch.no_grad():  # masks of both signs, so that the threshold blocks some voxels and not others
        model.decoder.mask_features_head.weight.mul_(40)
    stages, calls, out = _stages(model, batch)
    dec, steps_out = model.decoder, [*out.aux, out.final]
    steps = dec.config.num_decoders * 4
    assert len(calls) == 2 * steps
    fine_all = batch.coords.to(torch.int32)
    partly = 0
    for k, ((tgt, memory, qpos, key_pos, mask), output) in enumerate(calls):
        b, step = divmod(k, steps)
        i = step % 4
        stride = MASK3D[i]
        feats, coords = stages[stride]
        rows = coords[:, 0] == b
        assert len(memory) == _level_counts(batch, b)[i]
        torch.testing.assert_close(memory, dec.level_projection[i](feats[rows]), rtol=0, atol=0)
        fine = fine_all[fine_all[:, 0] == b][:, 1:]
        lo, hi = position_frame(fine.float() + 0.5)
        centres = (coords[rows][:, 1:].float() + 0.5) * stride
        torch.testing.assert_close(key_pos, dec.pos_enc(normalise_positions(centres, lo, hi)), rtol=0, atol=0)
        if step == 0:  # the first mask comes from the zero queries' prediction, which is not returned
            blocked = mask[0]
        else:
            blocked = _blocked_by_hand(steps_out[step - 1].masks[b], fine, coords[rows][:, 1:], stride)
            partly += int((blocked.any(1) & ~blocked.all(1)).sum())
        assert torch.equal(mask, blocked.expand_as(mask))
        expected = _attention_by_hand(dec.cross_attention[i], tgt, memory, qpos, key_pos, blocked)
        torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-5)
    assert partly > 0
    assert [lin.in_features for lin in dec.level_projection] == [32, 16, 16, 16]  # tiny's planes[3], planes[4:7]


def test_mask3d_levels_keep_full_resolution_masks_and_the_backbone_weights():
    batch = _batch()
    default, mask3d = _model(False), _model(True)
    assert default.backbone.state_dict().keys() == mask3d.backbone.state_dict().keys()
    assert all(torch.equal(v, mask3d.backbone.state_dict()[k]) for k, v in default.backbone.state_dict().items())
    assert default.backbone.architecture() == mask3d.backbone.architecture()  # a backbone checkpoint fits both
    with torch.no_grad():
        plain, more = default.backbone(batch.coords, batch.feats), mask3d.backbone(batch.coords, batch.feats)
    assert [lvl.stride for lvl in more.levels] == [16, 8, 4, 2, 1]
    for a, b in zip(plain.levels, more.levels[1:], strict=True):  # the other levels as before
        assert torch.equal(a.feats, b.feats) and torch.equal(a.coords, b.coords)
    counts = [_level_counts(batch, b)[0] for b in range(2)]
    assert [int((more.levels[0].coords[:, 0] == b).sum()) for b in range(2)] == counts
    out = mask3d(batch)
    for pred in [*out.aux, out.final]:
        for b in range(2):
            assert pred.masks[b].shape == (TINY.decoder.num_queries, int((batch.coords[:, 0] == b).sum()))
    assert len(out.aux) + 1 == 2 * 4


def test_preset_field_picks_the_levels_and_the_sample_sizes_follow_them():
    paper = get_preset("paper")
    assert paper.attention_levels == "16-2" and paper.attention_sample_sizes == (200, 800, 3200, 12800)
    config = segmenter_config(paper)
    assert config.backbone.bottleneck_level and config.decoder.levels == (0, 1, 2, 3)
    assert config.decoder.sample_sizes == (200, 800, 3200, 12800)
    assert paper.model_dump(mode="json")["attention_levels"] == "16-2"
    assert config.backbone.model_dump(mode="json")["bottleneck_level"] is True
    with pytest.raises(Exception, match="one per attended level"):
        get_preset("cpu-small", attention_sample_sizes=[1, 2, 3, 4, 5])


def test_mask3d_sample_sizes_apply_to_the_attended_levels_in_order():
    batch = _batch()
    counts = _level_counts(batch, 0)
    sizes = tuple(max(1, c // 2) for c in counts)
    model = _model(True, sample_sizes=sizes).train()
    model.decoder.sample_seed = 0
    _, calls, _ = _stages(model, batch)
    for step in range(8):
        assert len(calls[step][0][1]) == sizes[step % 4]  # scene 0: each level sampled to its own size


def test_checkpoint_of_the_other_levels_is_refused_by_its_architecture(tmp_path):
    presets = {levels: get_preset("cpu-small", attention_levels=levels) for levels in ("8-1", "16-2")}
    models = {levels: segmenter_from_preset(p) for levels, p in presets.items()}
    arch = {levels: m.architecture() for levels, m in models.items()}
    assert "attended_strides" not in arch["8-1"] and arch["16-2"]["attended_strides"] == [16, 8, 4, 2]
    assert arch["8-1"]["backbone"] == arch["16-2"]["backbone"]
    for have, want in (("8-1", "16-2"), ("16-2", "8-1")):
        path = save_model_checkpoint(tmp_path / f"{have}.ckpt", models[have], {})
        with pytest.raises(CheckpointError, match="another architecture: attended_strides="):
            load_model(path, "segmenter", into=segmenter_from_preset(presets[want]))
        rebuilt, _ = load_model(path, "segmenter")  # from the recorded config: the same levels
        assert rebuilt.architecture() == arch[have]
        backbone, _ = load_model(path, "backbone", into=Res16UNet(segmenter_config(presets[want]).backbone))
        assert backbone.architecture() == arch[want]["backbone"]


def test_records_differ_even_where_the_weights_have_the_same_shapes(tmp_path):
    """Res16UNet14's planes[3] equals its decoder widths: both level choices hold tensors of the same keys and shapes,
    so only the architecture record tells their checkpoints apart."""
    def build(bottleneck: bool) -> InstanceSegmenter:
        backbone = BackboneConfig(preset="14", in_channels=3, stem_kernel_size=3, bottleneck_level=bottleneck)
        return InstanceSegmenter(SegmenterConfig(backbone=backbone, decoder=TINY.decoder))
    default, mask3d = build(False), build(True)
    shapes = lambda m: {k: v.shape for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(default) == shapes(mask3d)
    path = save_model_checkpoint(tmp_path / "m.ckpt", mask3d, {})
    with pytest.raises(CheckpointError, match="attended_strides"):
        load_model(path, "segmenter", into=default)
