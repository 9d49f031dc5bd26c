"""The cross-attention's threshold mask under Mask3D's rule (DecoderConfig.attn_mask_rule="mask3d", issue 29 item 4).
JonasSchult/Mask3D models/mask3d.py mask_module computes the mask logits on the stride-1 voxels, average-pools them
2x at a time up to the attended level (MinkowskiAvgPooling(kernel_size=2, stride=2), num_pooling_steps =
len(aux) - hlevel - 1; each output the mean of the inputs present under it), then blocks where
`attn_mask.F.detach().sigmoid() < 0.5`; forward then lets a query blocked from every (sampled) voxel attend them all.
The default, "probability-mean" (the mean sigmoid over a level voxel's input voxels), stays as it was, bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_decoder_levels import _batch, _model
from test_decoder_sampling import _recorded

from freepoint_bench.engine.checkpoints import load_model, save_model_checkpoint
from freepoint_bench.engine.module import segmenter_config, segmenter_from_preset
from freepoint_bench.engine.presets import get_preset
from freepoint_bench.errors import CheckpointError
from freepoint_bench.models.backbone import BackboneOutput, LevelFeatures
from freepoint_bench.models.decoder import DecoderConfig, QueryDecoder, child_to_parent, pooling_step
from freepoint_bench.models.voxels import parent_rows

THRESHOLD = 0.7


# ------------------------------------------------------------------------------------------------ a hand-made scene

# One scene, three levels (strides 4, 2, 1), rows deliberately not in coordinate order. Stride 4: W (1,0,0) and
# V (0,0,0). V's stride-2 children: A (0,0,0), holding one input voxel, and B (1,0,0), holding three; W's: C (2,0,0),
# holding two.
FINE = [(3, 0, 0), (0, 0, 0), (4, 0, 0), (2, 0, 0), (2, 1, 0), (5, 1, 1)]  # input voxels: B, A, C, B, B, C
HALF = [(2, 0, 0), (0, 0, 0), (1, 0, 0)]  # stride 2, level units: C, A, B
QUARTER = [(1, 0, 0), (0, 0, 0)]  # stride 4, level units: W, V
# Mask logits per query over FINE's rows: A's voxel, B's three, C's two.
LOGITS = [
    [-1.0, 4.0, 5.0, -1.0, -1.0, 5.0],  # A +4, B -1: V's nested mean (4 - 1) / 2 = 1.5 > 0; mean probability 0.447
    [-1.0, 2.0, 5.0, -1.0, -1.0, 5.0],  # A +2, B -1: nested 0.5 > 0; mean probability 0.422; flat logit mean -0.25
    [1.0, -4.0, 5.0, 1.0, 1.0, 5.0],  # A -4, B +1: nested -1.5 < 0; mean probability 0.553
    [-3.0] * 6,  # blocked everywhere: attends everything (Mask3D sets such a row to False)
]
# True = blocked, per attended stride, worked out by hand from the comments above (threshold 0.5: logit < 0).
MASK3D_BLOCKED = {
    4: [[0, 0], [0, 0], [0, 1], [0, 0]],
    2: [[0, 0, 1], [0, 0, 1], [0, 1, 0], [0, 0, 0]],  # C, A, B: one child each way, the rules agree here
    1: [[1, 0, 0, 1, 1, 0], [1, 0, 0, 1, 1, 0], [0, 1, 0, 0, 0, 0], [0] * 6],
}
MEAN_PROBABILITY_BLOCKED_4 = [[0, 1], [0, 1], [0, 0], [0, 0]]  # the default rule at stride 4: V the other way


def _hand_made() -> BackboneOutput:
    def level(coords, stride):
        c = torch.tensor([(0, *xyz) for xyz in coords], dtype=torch.int32)
        return LevelFeatures(torch.zeros(len(c), 1), c, stride)

    levels = [level(QUARTER, 4), level(HALF, 2), level(FINE, 1)]
    return BackboneOutput(feats=levels[-1].feats, levels=levels)


def _decoder(rule: str, threshold: float = 0.5) -> QueryDecoder:
    config = DecoderConfig(hidden_dim=4, num_heads=2, num_queries=len(LOGITS), levels=(0, 1, 2),
                           attn_mask_rule=rule, attn_mask_threshold=threshold)
    return QueryDecoder(config, [1, 1, 1], 1)


def test_hand_made_three_levels_follow_mask3d_nested_logit_mean_not_the_probability_mean():
    features, logits = _hand_made(), torch.tensor(LOGITS)
    pooling = child_to_parent(features, 0, 0)
    assert pooling[1][0].tolist() == [2, 1, 0, 2, 2, 0]  # FINE's rows in HALF (B, A, C, B, B, C)
    assert pooling[0][0].tolist() == [0, 1, 1] and pooling[0][1].tolist() == [1, 2]  # C in W, A and B in V
    mask3d, default = _decoder("mask3d"), _decoder("probability-mean")
    for lvl, stride in enumerate((4, 2, 1)):
        steps = [pooling[j] for j in range(1, lvl - 1, -1)]  # fine to coarse, as the decoder's _scene takes them
        mask = mask3d._attention_mask(logits, steps)
        assert mask.shape == (2, len(LOGITS), len(features.levels[lvl].coords))
        assert torch.equal(mask[0], mask[1])  # one mask, every head
        assert mask[0].int().tolist() == MASK3D_BLOCKED[stride], stride
    level4 = features.levels[0].coords
    flat = default._attention_mask(logits, [pooling_step(parent_rows(features.levels[-1].coords, level4, 4),
                                                         len(level4))])
    assert flat[0].int().tolist() == MEAN_PROBABILITY_BLOCKED_4
    assert MEAN_PROBABILITY_BLOCKED_4 != MASK3D_BLOCKED[4]  # the example tells the rules apart
    # and a single 4x mean of the logits (not Mask3D's mean of means) would block query 1 from V: (2 - 3) / 4 < 0
    assert sum(LOGITS[1][j] for j in (0, 1, 3, 4)) / 4 < 0 < (LOGITS[1][1] + LOGITS[1][0]) / 2


def test_threshold_applies_to_the_sigmoid_of_the_pooled_logit():
    features, logits = _hand_made(), torch.tensor(LOGITS)
    pooling = child_to_parent(features, 0, 0)
    # query 1's V: nested mean 0.5, sigmoid 0.622: attended at 0.6, blocked at 0.65
    for threshold, blocked in ((0.6, False), (0.65, True)):
        mask = _decoder("mask3d", threshold)._attention_mask(logits, [pooling[1], pooling[0]])
        assert bool(mask[0, 1, 1]) is blocked
    assert 0.6 < 1 / (1 + math.exp(-0.5)) < 0.65


def test_levels_not_2x_apart_are_refused_with_the_fix():
    features = _hand_made()
    features.levels.pop(1)  # strides 4 and 1
    with pytest.raises(ValueError, match="attn_mask_rule='probability-mean'"):
        child_to_parent(features, 0, 0)


# ------------------------------------------------------------------------------ the decoder against a brute force

def _nested_by_hand(logits: np.ndarray, fine: np.ndarray, steps: int) -> dict[tuple[int, ...], np.ndarray]:
    """Returns {voxel coords at stride 2**steps: (Q,) pooled logits}: the input voxels' logits averaged over each
    coarser voxel's children (coords // 2), one 2x step after the other, from the input coordinates alone."""
    values = {tuple(c): logits[:, j] for j, c in enumerate(fine.tolist())}
    for _ in range(steps):
        children: dict[tuple[int, ...], list[np.ndarray]] = {}
        for c, v in values.items():
            children.setdefault(tuple(x // 2 for x in c), []).append(v)
        values = {c: np.mean(v, axis=0) for c, v in children.items()}
    return values


@pytest.mark.parametrize("bottleneck", [False, True], ids=["8-1", "16-2"])
def test_every_cross_attention_mask_is_the_nested_pooling_by_brute_force(bottleneck):
    batch = _batch()  # two scenes of random points at 5 cm voxels: sparse, uneven children per voxel
    model = _model(bottleneck, attn_mask_rule="mask3d", attn_mask_threshold=THRESHOLD).eval()
    with torch.no_grad():  # masks of both signs, so that the threshold blocks some voxels and not others
        model.decoder.mask_features_head.weight.mul_(40)
        features, calls, out = _recorded(model, batch)
    dec, steps_out = model.decoder, [*out.aux, out.final]
    levels = dec.config.levels
    steps = dec.config.num_decoders * len(levels)
    assert len(calls) == 2 * steps
    finest = features.levels[-1]
    default = _model(bottleneck, attn_mask_threshold=THRESHOLD).decoder  # the default rule, on the same masks
    cut, partly, differs, checked, total = math.log(THRESHOLD / (1 - THRESHOLD)), 0, 0, 0, 0
    for k, ((tgt, _memory, _qpos, _kpos, mask), _output) in enumerate(calls):
        b, step = divmod(k, steps)
        level = features.levels[levels[step % len(levels)]]
        rows = finest.coords[:, 0] == b
        if step == 0:  # the zero queries' prediction, which is not returned
            with torch.no_grad():
                queries = torch.zeros(len(tgt), dec.config.hidden_dim)
                previous = dec._predict(queries, dec.mask_features_head(finest.feats[rows]))[0]
        else:
            previous = steps_out[step - 1].masks[b]
        fine = finest.coords[rows][:, 1:].numpy()
        pooled = _nested_by_hand(previous.double().numpy(), fine, int(math.log2(level.stride)))
        keys = [tuple(c) for c in level.coords[level.coords[:, 0] == b][:, 1:].tolist()]
        assert set(keys) == set(pooled)  # the level's voxels are the input voxels' ancestors, no more, no fewer
        values = torch.from_numpy(np.stack([pooled[c] for c in keys], axis=1))
        blocked = values < cut  # sigmoid(v) < THRESHOLD
        blocked &= ~blocked.all(1, keepdim=True)
        assert torch.equal(mask[0], mask[-1])  # one mask, every head
        sure = ~((values - cut).abs() < 1e-5).any(1)  # queries with no value so near the cut that float32 may flip it
        assert torch.equal(mask[0][sure], blocked[sure]), (b, step)
        checked, total = checked + int(sure.sum()), total + len(sure)
        partly += int((blocked.any(1) & ~blocked.all(1)).sum())
        parent = parent_rows(finest.coords[rows], level.coords[level.coords[:, 0] == b], level.stride)
        probability_mean = default._attention_mask(previous, [pooling_step(parent, len(keys))])
        differs += int((probability_mean[0] != blocked).sum())
    assert checked >= 0.9 * total  # near-ties are rare
    assert partly > 0 and differs > 0  # some queries partly blocked, and the rules disagree somewhere


# ------------------------------------------------------------------------- the default, gradients, records, loads

def _attention_mask_before(self, mask_logits, steps, keys=None):
    """QueryDecoder._attention_mask as it was before attn_mask_rule (commit 79c8c65), transcribed (taking today's
    arguments: the one pooling step's parent rows, and the level's voxel count from its counts)."""
    ((parent, step_counts),) = steps
    n_keys = len(step_counts)
    with torch.no_grad():
        probs = mask_logits.sigmoid()
        pooled = probs.new_zeros(probs.shape[0], n_keys).index_add_(1, parent, probs)
        counts = torch.bincount(parent, minlength=n_keys).clamp(min=1)
        blocked = (pooled / counts) < self.config.attn_mask_threshold
        if keys is not None:
            blocked = blocked[:, keys]
        blocked &= ~blocked.all(dim=1, keepdim=True)
    return blocked.repeat(self.config.num_heads, 1, 1)


def _outputs(model, batch) -> list[torch.Tensor]:
    out = model(batch)
    return [t for p in [*out.aux, out.final] for t in [*p.masks, p.objectness]]


@pytest.mark.parametrize("bottleneck", [False, True], ids=["8-1", "16-2"])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train-sampled"])
def test_default_rule_gives_the_outputs_of_before_bit_for_bit(bottleneck, train, monkeypatch):
    batch = _batch()
    sizes = (3, 10, 30, 100) if train else None  # training: Mask3D's key sampling on top
    got = _model(bottleneck, attn_mask_threshold=THRESHOLD, sample_sizes=sizes).train(train)
    before = _model(bottleneck, attn_mask_threshold=THRESHOLD, sample_sizes=sizes).train(train)
    assert got.decoder.config.attn_mask_rule == "probability-mean"
    got.decoder.sample_seed = before.decoder.sample_seed = 3
    with torch.no_grad():
        for m in (got, before):
            m.decoder.mask_features_head.weight.mul_(40)
        new = _outputs(got, batch)
        monkeypatch.setattr(type(before.decoder), "_attention_mask", _attention_mask_before)
        old = _outputs(before, batch)
    for a, b in zip(new, old, strict=True):
        assert torch.equal(a, b)


def test_gradients_do_not_flow_through_the_mask():
    """As Mask3D (sigmoid of detached pooled logits, a bool mask): every parameter that gets a gradient under the
    default rule gets one under Mask3D's, the masks handed to the attention carry no graph, and the gradients are
    the same when the pooling is handed detached logits."""
    batch = _batch()
    grads = {}
    for name, rule, detach in (("default", "probability-mean", False), ("mask3d", "mask3d", False),
                               ("detached", "mask3d", True)):
        model = _model(True, attn_mask_rule=rule).train()
        masks = []
        original = model.decoder._attention_mask

        def wrapped(logits, *args, original=original, detach=detach, masks=masks, **kwargs):
            masks.append(original(logits.detach() if detach else logits, *args, **kwargs))
            return masks[-1]

        model.decoder._attention_mask = wrapped
        sum(t.sum() for t in _outputs(model, batch)).backward()
        assert masks and all(m.dtype == torch.bool and not m.requires_grad and m.grad_fn is None for m in masks)
        grads[name] = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    assert grads["default"].keys() == grads["mask3d"].keys()
    for k, g in grads["mask3d"].items():
        assert torch.equal(g, grads["detached"][k]), k


def test_preset_field_reaches_the_decoder_and_the_records_only_when_set(tmp_path):
    preset = get_preset("cpu-small")
    assert preset.attention_mask_rule == "probability-mean"
    assert "attention_mask_rule" not in preset.model_dump(mode="json")
    config = segmenter_config(preset)
    assert config.decoder.attn_mask_rule == "probability-mean"
    assert "attn_mask_rule" not in config.decoder.model_dump(mode="json")
    assert "attn_mask_rule" not in segmenter_from_preset(preset).architecture()
    for levels in ("8-1", "16-2"):
        mask3d = preset.with_(attention_mask_rule="mask3d", attention_levels=levels)
        assert mask3d.model_dump(mode="json")["attention_mask_rule"] == "mask3d"
        config = segmenter_config(mask3d)
        assert config.decoder.attn_mask_rule == "mask3d"
        assert config.decoder.model_dump(mode="json")["attn_mask_rule"] == "mask3d"
        model = segmenter_from_preset(mask3d)
        assert model.architecture()["attn_mask_rule"] == "mask3d"
        # a checkpoint of one rule is rebuilt with it, and refused by a decoder of the other
        path = save_model_checkpoint(tmp_path / f"{levels}.ckpt", model, {})
        rebuilt, _ = load_model(path, "segmenter")
        assert rebuilt.config.decoder.attn_mask_rule == "mask3d"
        with pytest.raises(CheckpointError, match="another architecture: attn_mask_rule="):
            load_model(path, "segmenter", into=segmenter_from_preset(preset.with_(attention_levels=levels)))
        load_model(path, "backbone", into=segmenter_from_preset(preset.with_(attention_levels=levels)).backbone)
        # (the backbone fits either rule)
    assert get_preset("paper").attention_mask_rule == "mask3d"  # the paper preset runs Mask3D's
