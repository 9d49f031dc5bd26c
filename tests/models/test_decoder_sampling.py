"""Mask3D's training-time sampling of the cross-attention's keys (DecoderConfig.sample_sizes) against its rule
(JonasSchult/Mask3D models/mask3d.py forward): per scene and step at most sample_sizes[level] random voxels of the
level (all of a scene with fewer, the batch padded to the longest and the padding masked out), the threshold mask
taken on the sampled rows (a query blocked from all of them attends all), and every voxel at evaluation."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from freepoint_bench.engine.module import sample_seed, segmenter_config
from freepoint_bench.engine.presets import get_preset
from freepoint_bench.models.decoder import DecoderConfig, normalise_positions, position_frame
from freepoint_bench.models.segmenter import TINY, InstanceSegmenter, SegmenterConfig
from freepoint_bench.models.voxels import collate

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_host_syncs  # noqa: E402

SIZES = (600, 200)  # points of the two scenes: the second has fewer voxels at every level
VOXEL = 0.1
STRIDES = (8, 4, 2, 1)  # the tiny backbone's levels, coarse to fine
THRESHOLD = 0.7


def _batch():
    rng = np.random.default_rng(0)
    xyz = [rng.uniform(0, [3, 2, 1], (n, 3)).astype(np.float32) for n in SIZES]
    return collate(xyz, [rng.uniform(0, 1, x.shape).astype(np.float32) for x in xyz], voxel_size=VOXEL)


def _level_counts(batch) -> np.ndarray:
    """Returns (scenes, levels) voxel counts, from the input coordinates: a level's voxels are the distinct
    coordinates // stride."""
    coords = batch.coords.numpy()
    return np.array([[len(np.unique(coords[coords[:, 0] == b, 1:] // s, axis=0)) for s in STRIDES]
                     for b in range(len(SIZES))])


def _between(counts: np.ndarray) -> tuple[int, ...]:
    """Sample sizes that sample the larger scene and leave the smaller one whole (Mask3D would pad it)."""
    assert (counts[0] > counts[1]).all(), counts
    return tuple(int(c) for c in (counts[0] + counts[1]) // 2)


def _model(sample_sizes, num_decoders: int = 2, threshold: float = 0.5) -> InstanceSegmenter:
    torch.manual_seed(0)  # the same weights whatever the sample sizes (they add no parameters)
    decoder = DecoderConfig(**{**TINY.decoder.model_dump(), "num_decoders": num_decoders,
                               "sample_sizes": sample_sizes, "attn_mask_threshold": threshold})
    return InstanceSegmenter(SegmenterConfig(backbone=TINY.backbone, decoder=decoder))


def _outputs(model, batch) -> list[torch.Tensor]:
    out = model(batch)
    return [t for p in [*out.aux, out.final] for t in [*p.masks, p.objectness]]


def _recorded(model, batch):
    """Returns (backbone output, [per cross-attention call: (args, output)], segmenter output) of one forward."""
    calls, features = [], []
    hooks = [layer.register_forward_hook(lambda _m, args, out: calls.append((args, out)))
             for layer in model.decoder.cross_attention]
    hooks.append(model.backbone.register_forward_hook(lambda _m, _a, out: features.append(out)))
    try:
        out = model(batch)
    finally:
        for h in hooks:
            h.remove()
    return features[0], calls, out


def _scene_level(model, features, b: int, lvl: int):
    """Returns (memory (K, d), key positions (K, d), level coords (K, 3)) of every voxel of scene b at level lvl,
    as the decoder builds them before any sampling."""
    dec, level, finest = model.decoder, features.levels[lvl], features.levels[-1]
    rows = level.coords[:, 0] == b
    fine = finest.coords[finest.coords[:, 0] == b][:, 1:].float() + 0.5
    lo, hi = position_frame(fine)
    centres = (level.coords[rows][:, 1:].float() + 0.5) * level.stride
    return (dec.level_projection[lvl](level.feats[rows]), dec.pos_enc(normalise_positions(centres, lo, hi)),
            level.coords[rows][:, 1:])


def _rows_of(sampled: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """Returns, for each row of `sampled`, the row of `full` it equals exactly (failing when there is none)."""
    equal = (sampled[:, None, :] == full[None, :, :]).all(-1)
    assert equal.any(1).all(), "a sampled key is no voxel of its level"
    return equal.float().argmax(1)


def test_sample_sizes_at_least_every_level_count_and_eval_mode_change_nothing():
    batch = _batch()
    counts = _level_counts(batch)
    for sizes in (tuple(int(c) for c in counts.max(0)), (10**9,) * 4):
        for train in (True, False):  # fresh models: a training pass moves the BatchNorm statistics
            got, expected = _model(sizes).train(train), _model(None).train(train)
            for a, b in zip(_outputs(got, batch), _outputs(expected, batch), strict=True):
                assert torch.equal(a, b)
    got, expected = _model((1, 1, 1, 1)).eval(), _model(None).eval()  # evaluation attends every voxel (is_eval)
    for a, b in zip(_outputs(got, batch), _outputs(expected, batch), strict=True):
        assert torch.equal(a, b)


def test_each_step_attends_a_fresh_subset_of_its_scenes_level_and_a_smaller_scene_whole():
    batch = _batch()
    counts = _level_counts(batch)
    sizes = _between(counts)
    model = _model(sizes).train()
    features, calls, _ = _recorded(model, batch)
    levels = model.decoder.config.levels
    steps = model.decoder.config.num_decoders * len(levels)
    assert len(calls) == len(SIZES) * steps  # scene by scene, every step
    drawn: dict[tuple[int, int], list[list[int]]] = {}
    for k, ((tgt, memory, _qpos, key_pos, mask), _out) in enumerate(calls):
        b, lvl = k // steps, levels[k % steps % len(levels)]
        full_memory, full_pos, _ = _scene_level(model, features, b, lvl)
        assert len(full_memory) == counts[b, lvl]
        rows = _rows_of(memory, full_memory)
        assert len(rows) == min(counts[b, lvl], sizes[lvl])
        assert len(set(rows.tolist())) == len(rows)  # distinct voxels: no padding, no repeats
        assert torch.equal(key_pos, full_pos[rows])  # each key keeps its own position
        assert mask.shape == (model.decoder.config.num_heads, len(tgt), len(rows))
        drawn.setdefault((b, lvl), []).append(sorted(rows.tolist()))
    for lvl in levels:
        assert all(r == list(range(counts[1, lvl])) for r in drawn[(1, lvl)])  # the smaller scene: whole
        assert len({tuple(r) for r in drawn[(0, lvl)]}) > 1  # the larger one: a fresh draw at every pass


def _parent_mean_blocked(mask_logits: torch.Tensor, fine: torch.Tensor, level: torch.Tensor, stride: int,
                         threshold: float):
    """Mask3D's attention mask over every voxel of a level, by a loop: a level voxel is blocked for a query when
    the mean sigmoid of the query's mask over the input voxels inside it is below the threshold (Mask3D: 0.5)."""
    index = {tuple(c): i for i, c in enumerate(level.tolist())}
    members: list[list[int]] = [[] for _ in index]
    for j, c in enumerate((fine // stride).tolist()):
        members[index[tuple(c)]].append(j)
    probs = mask_logits.sigmoid()
    return torch.stack([probs[:, m].mean(1) < threshold for m in members], dim=1)


def test_each_query_attends_only_the_sampled_voxels_by_a_dense_reference():
    """Every cross-attention output equals multi-head attention over *all* the level's voxels with the voxels not
    sampled blocked and Mask3D's threshold mask on the sampled ones, computed here from the previous step's masks
    (an all-blocked row over the sample attends the whole sample)."""
    batch = _batch()
    sizes = (1, 1, *_between(_level_counts(batch))[2:])  # one coarse voxel: some queries are blocked from it
    model = _model(sizes, threshold=THRESHOLD).train()
    with torch.no_grad():  # masks of both signs, so that the threshold blocks some voxels and not others
        model.decoder.mask_features_head.weight.mul_(40)
    features, calls, out = _recorded(model, batch)
    cfg, steps_out = model.decoder.config, [*out.aux, out.final]
    partly, emptied = 0, 0  # queries that the threshold blocks from some sampled voxels / from all of them
    steps = cfg.num_decoders * len(cfg.levels)
    for k, ((tgt, memory, qpos, _key_pos, mask), output) in enumerate(calls):
        b, step = divmod(k, steps)
        lvl = cfg.levels[step % len(cfg.levels)]
        full_memory, full_pos, level_coords = _scene_level(model, features, b, lvl)
        rows = _rows_of(memory, full_memory)
        if step == 0:  # the first mask comes from the zero queries' prediction, which is not returned
            blocked = mask[0]
        else:
            fine = features.levels[-1].coords
            fine = fine[fine[:, 0] == b][:, 1:]
            over_level = _parent_mean_blocked(steps_out[step - 1].masks[b], fine, level_coords, STRIDES[lvl], THRESHOLD)
            blocked = over_level[:, rows]
            emptied += int((blocked.all(1) & ~over_level.all(1)).sum())
            blocked = blocked & ~blocked.all(1, keepdim=True)
            partly += int((blocked.any(1) & ~blocked.all(1)).sum())
        assert torch.equal(mask, blocked.expand_as(mask))  # one mask, every head
        dense = torch.ones(len(tgt), len(full_memory), dtype=torch.bool)  # not sampled: never attended
        dense[:, rows] = blocked
        layer = (0 if cfg.shared_decoder else step // len(cfg.levels)) * len(cfg.levels) + step % len(cfg.levels)
        expected = _attention_by_hand(model.decoder.cross_attention[layer], tgt, full_memory, qpos, full_pos, dense)
        torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-5)
    assert partly > 0 and emptied > 0  # both cases of the rule were exercised


def _attention_by_hand(layer, tgt, memory, qpos, kpos, blocked):
    """Post-norm multi-head attention written out: softmax over the keys not blocked, per head."""
    mha, heads = layer.attn, layer.attn.num_heads
    w, bias = mha.in_proj_weight, mha.in_proj_bias
    d = tgt.shape[1]
    q = (tgt + qpos) @ w[:d].T + bias[:d]
    k = (memory + kpos) @ w[d:2 * d].T + bias[d:2 * d]
    v = memory @ w[2 * d:].T + bias[2 * d:]
    dh = d // heads
    outs = []
    for h in range(heads):
        s = slice(h * dh, (h + 1) * dh)
        logits = (q[:, s] @ k[:, s].T) / dh**0.5
        outs.append(torch.softmax(logits.masked_fill(blocked, float("-inf")), dim=1) @ v[:, s])
    attended = torch.cat(outs, dim=1) @ mha.out_proj.weight.T + mha.out_proj.bias
    return layer.norm(tgt + attended)


def _pad_with_row0(x: torch.Tensor, width: int) -> torch.Tensor:
    """Mask3D's padding of a scene's keys: idx zeros past its voxels, so copies of row 0."""
    return torch.cat([x, x[:1].expand(width - len(x), *x.shape[1:])])


def test_per_scene_keys_equal_mask3ds_padded_batch():
    """Mask3D stacks the scenes' sampled keys, pads a shorter scene with copies of its row 0 and masks them out;
    attention on that batch gives each scene what it gets alone on its own keys here."""
    batch = _batch()
    model = _model(_between(_level_counts(batch))).train()
    _, calls, _ = _recorded(model, batch)
    steps = len(calls) // 2
    cfg = model.decoder.config
    for step in range(steps):
        (t0, m0, q0, p0, a0), o0 = calls[step]
        (t1, m1, q1, p1, a1), o1 = calls[steps + step]
        width = max(len(m0), len(m1))
        memory = torch.stack([_pad_with_row0(m0, width), _pad_with_row0(m1, width)])
        pos = torch.stack([_pad_with_row0(p0, width), _pad_with_row0(p1, width)])
        masks = []
        for a, m in ((a0, m0), (a1, m1)):
            padded = torch.ones(a.shape[0], a.shape[1], width, dtype=torch.bool)
            padded[:, :, : len(m)] = a
            masks.append(padded)
        layer = model.decoder.cross_attention[step % len(cfg.levels)]
        attended, _ = layer.attn(torch.stack([t0 + q0, t1 + q1]), memory + pos, memory,
                                 attn_mask=torch.cat(masks), need_weights=False)
        batched = layer.norm(torch.stack([t0, t1]) + attended)
        torch.testing.assert_close(batched[0], o0, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(batched[1], o1, rtol=1e-5, atol=1e-5)


def test_draws_repeat_per_seed_and_differ_across_seeds():
    batch = _batch()
    model = _model((2, 8, 20, 40)).train()

    def run(seed=None, global_seed=None):
        model.decoder.sample_seed = seed
        if global_seed is not None:
            torch.manual_seed(global_seed)
        return _outputs(model, batch)

    def same(a, b):
        return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))

    assert same(run(seed=3), run(seed=3))
    assert not same(run(seed=3), run(seed=4))
    assert same(run(global_seed=5), run(global_seed=5))  # no seed: torch's global RNG
    assert not same(run(global_seed=5), run(global_seed=6))
    # the engine's per-step seed: (seed, epoch, batch, rank), each part counts
    seeds = {sample_seed(0, 0, 0, 0), sample_seed(1, 0, 0, 0), sample_seed(0, 1, 0, 0), sample_seed(0, 0, 1, 0),
             sample_seed(0, 0, 0, 1)}
    assert len(seeds) == 5 and sample_seed(0, 1, 2, 3) == sample_seed(0, 1, 2, 3)
    assert all(0 <= s < 2**63 for s in seeds)


def test_sampling_reads_nothing_more_from_the_device():
    batch = _batch()
    counted = []
    for sizes in (None, (2, 8, 20, 40)):
        model = _model(sizes).train()
        model.decoder.sample_seed = 1
        features = model.backbone(batch.coords, batch.feats)
        with bench_host_syncs.HostSyncCounter() as counter:
            model.decoder(features)
        counted.append(counter.counts)
    assert counted[0] == counted[1]


def test_config_refuses_a_size_list_of_the_wrong_length_or_a_zero_size():
    with pytest.raises(ValueError, match="one per backbone level"):
        _model((100, 100, 100))
    with pytest.raises(ValidationError):
        DecoderConfig(sample_sizes=(0, 1, 1, 1))
    with pytest.raises(Exception, match="attention_sample_sizes"):
        get_preset("cpu-small", attention_sample_sizes=[0, 1, 1, 1])


def test_preset_field_reaches_the_decoder_and_stays_out_of_the_record_at_its_default():
    preset = get_preset("cpu-small")  # the paper preset sets Mask3D's samples
    assert get_preset("paper").attention_sample_sizes == (200, 800, 3200, 12800)
    assert "attention_sample_sizes" not in preset.model_dump(mode="json")
    assert segmenter_config(preset).decoder.sample_sizes is None
    assert "sample_sizes" not in segmenter_config(preset).decoder.model_dump(mode="json")
    sized = preset.with_(attention_sample_sizes=[800, 3200, 12800, 51200])
    assert sized.model_dump(mode="json")["attention_sample_sizes"] == [800, 3200, 12800, 51200]
    assert segmenter_config(sized).decoder.sample_sizes == (800, 3200, 12800, 51200)
