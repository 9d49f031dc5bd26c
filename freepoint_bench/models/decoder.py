"""Mask3D-style query decoder: FPS-sampled queries, masked cross-attention over the backbone levels."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_serializer
from torch import nn

from freepoint_bench.config import omit_at_default
from freepoint_bench.models.backbone import BackboneOutput
from freepoint_bench.models.voxels import parent_rows


class DecoderConfig(BaseModel):
    """Configuration of the query decoder (defaults: Mask3D's ScanNet setting, §3.3 uses Mask3D [41])."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden_dim: int = Field(128, ge=2)  # Mask3D: 128 (also the mask embedding size)
    num_queries: int = Field(100, ge=1)  # Mask3D: 100 queries on ScanNet
    num_heads: int = Field(8, ge=1)  # Mask3D: 8
    dim_feedforward: int = Field(1024, ge=1)  # Mask3D: 1024
    dropout: float = Field(0.0, ge=0, lt=1)  # Mask3D: 0.0
    num_decoders: int = Field(3, ge=1)  # Mask3D: 3 passes over the levels
    shared_decoder: bool = True  # Mask3D: the same layers on every pass
    # Backbone levels attended, in this order, as indices into the backbone's levels (models.backbone.BackboneOutput):
    # strides 8, 4, 2, 1 by default, 16, 8, 4, 2 on a backbone with bottleneck_level. Mask3D's hlevels [0, 1, 2, 3]
    # (conf/model/mask3d.yaml) index its Res16UNet's 5 outputs, strides 16, 8, 4, 2, 1 (models/res16unet.py forward,
    # feature_maps; models/mask3d.py forward reads aux[hlevel]): it attends strides 16, 8, 4, 2, never 1, and
    # computes masks on the stride-1 features (mask_features_head on the backbone's full-resolution output), as here.
    # Each attended level gets its own projection to hidden_dim (Mask3D's lin_squeeze[i], sizes[hlevel] wide).
    levels: tuple[int, ...] = (0, 1, 2, 3)
    num_classes: int = Field(0, ge=0)  # 0 = class-agnostic (objectness only); C adds C + 1 logits
    attn_mask_threshold: float = Field(0.5, gt=0, lt=1)  # Mask3D: voxels with p < 0.5 are masked out
    # How the cross-attention's threshold mask of a level voxel comes from the previous prediction's full-resolution
    # mask logits (either way a query is blocked where the pooled value is below attn_mask_threshold, without
    # gradient). "probability-mean": the mean of the sigmoid over the input voxels inside the level voxel.
    # "mask3d": Mask3D's rule (JonasSchult/Mask3D models/mask3d.py mask_module): the logits are average-pooled 2x at
    # a time from the stride-1 voxels up to the attended stride (`self.pooling = MinkowskiAvgPooling(kernel_size=2,
    # stride=2)` applied num_pooling_steps = len(aux) - hlevel - 1 times, in float), each coarser voxel the mean of
    # its existing children (MinkowskiAvgPooling divides by the number of inputs present, not the kernel's volume),
    # then `attn_mask.F.detach().sigmoid() < 0.5`: a nested mean of logits, so a child holding one input voxel
    # weighs as much as one holding eight, and the threshold is on the sigmoid of the mean logit, not the mean
    # probability. The children of a voxel at stride s are the stride-s/2 voxels of the backbone's next level
    # (coords // 2; models.backbone's down convs are kernel 2, stride 2, so every level holds exactly the parents of
    # the next). Left out of the record at "probability-mean".
    attn_mask_rule: Literal["probability-mean", "mask3d"] = "probability-mean"
    fourier_scale: float = Field(1.0, gt=0)  # Mask3D gauss_scale of the Fourier positional encoding
    fourier_seed: int = 0  # the fixed random Fourier basis
    # Mask3D's use_np_features: queries start from the backbone features of their FPS-sampled voxels
    # (projected) instead of zeros. Mask3D's ScanNet setting: False (zero queries).
    query_features: bool = False
    # A spatial prior on the mask logits (not in Mask3D): each query's logit over voxel v adds
    # gain * k(x_q, x_v) + bias, k a random-Fourier-feature Gaussian kernel of width about
    # 1 / (2 pi spatial_scale) scene sizes around the query's FPS position, so the first masks are blobs
    # around their queries instead of noise and masked attention is local from the first step; gain and
    # bias are learnt. Off in Mask3D's setting.
    spatial_prior: bool = False
    spatial_scale: float = Field(1.5, gt=0)  # kernel frequency scale (1.5: width ~10% of the scene's longest side)
    spatial_dim: int = Field(64, ge=2)  # Fourier features of the kernel (more: a smoother kernel)
    # With spatial_prior: each query predicts its own relative-position template instead of the fixed blob,
    # sum_f r_f . [sin, cos](2 pi (x_v - x_q) . B_f), r = a linear head on the query (initialised to the blob)
    spatial_relative: bool = False
    # Scale-consistent positions for crop training (not in Mask3D): Mask3D normalises positions by each
    # scene's box, so a model trained on crops sees a whole scene shrunk at prediction time (its spatial
    # prior and positional encodings widen by the whole-scene / crop size ratio). position_scale: a fixed
    # length, in input voxels, that positions are divided by instead (None: the scene's box, Mask3D).
    position_scale: float | None = Field(None, gt=0)
    # voxels_per_query: the number of queries grows with the scene, ceil(voxels / voxels_per_query) for the
    # largest scene of the batch and at least num_queries, so a whole scene gets the query density of the
    # training crops (None: always num_queries, Mask3D).
    voxels_per_query: float | None = Field(None, gt=0)
    # Mask3D's key sampling in training (conf/model/mask3d.yaml `sample_sizes: [200, 800, 3200, 12800, 51200]`,
    # `max_sample_size: false`; models/mask3d.py forward): each cross-attention step attends at most
    # sample_sizes[l] voxels of backbone level l, a fresh uniform subset (randperm) per scene and step; a scene with
    # no more voxels attends them all (Mask3D pads it to the batch's and masks the padding out; here scenes are
    # decoded one at a time, so there is nothing to pad). The threshold mask is taken on the subset, and a query
    # blocked from every sampled voxel attends them all. Evaluation (eval mode) attends every voxel, as Mask3D's
    # is_eval. One entry per attended level (`levels`), in that order: Mask3D's sample_sizes[hlevel] for its hlevels.
    # None: every voxel. Mask3D's sizes by stride (16: 200, 8: 800, 4: 3200, 2: 12800, 1: 51200, both at 2 cm voxels)
    # give (800, 3200, 12800, 51200) for strides 8, 4, 2, 1 and Mask3D's own (200, 800, 3200, 12800) for 16, 8, 4, 2.
    sample_sizes: tuple[Annotated[int, Field(ge=1)], ...] | None = None

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        # left out at its default: checkpoints record this config, and older ones were written without it
        return omit_at_default(self, handler(self), ("sample_sizes", "attn_mask_rule"))


@dataclass
class Prediction:
    """Predictions of one decoder step.

    masks: per scene, (Q, M_b) mask logits over that scene's input voxels.
    objectness: (B, Q) logits. class_logits: (B, Q, C + 1) logits (last = no object) or None.
    """

    masks: list[torch.Tensor]
    objectness: torch.Tensor
    class_logits: torch.Tensor | None


@dataclass
class DecoderOutput:
    """The final prediction, the auxiliary ones (one per decoder step before it), the query positions."""

    final: Prediction
    aux: list[Prediction]
    query_xyz: list[torch.Tensor]  # per scene, (Q, 3) normalised positions of the queries


def fps(points: torch.Tensor, n: int) -> torch.Tensor:
    """Returns (n,) int64 indices of a farthest point sample of points (M, 3), starting at row 0.

    When n > M every point is taken and the rest repeat the sample cyclically. The running choice stays on the
    device (a 0-d index tensor): reading it on the host would wait for the device once per query.
    """
    m = points.shape[0]
    k = min(n, m)
    chosen = torch.zeros(k, dtype=torch.long, device=points.device)
    dist = torch.full((m,), float("inf"), device=points.device, dtype=points.dtype)
    last = chosen[0]
    for i in range(1, k):
        dist = torch.minimum(dist, (points - points[last]).square().sum(1))
        last = torch.argmax(dist)
        chosen[i] = last
    if n > k:
        chosen = chosen[torch.arange(n, device=points.device) % k]
    return chosen


def child_to_parent(features: BackboneOutput, b: int, coarsest: int) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Returns {j: (parent, counts)} for the backbone levels j from `coarsest` to the last but one: parent
    (M_{j+1},) the row among scene b's level-j voxels of each of its level-(j + 1) voxels (coords // 2), counts
    (M_j,) how many children each level-j voxel has. Consecutive levels must be 2x apart (models.backbone's are:
    strides 16, 8, 4, 2, 1 with bottleneck_level, 8, 4, 2, 1 without), as Mask3D's pooling steps are."""
    levels, maps = features.levels, {}
    scene = [lvl.coords[lvl.coords[:, 0] == b] for lvl in levels[coarsest:]]
    for k, j in enumerate(range(coarsest, len(levels) - 1)):
        if levels[j].stride != 2 * levels[j + 1].stride:
            raise ValueError(f"attn_mask_rule='mask3d' pools 2x per backbone level, but levels {j} and {j + 1} have "
                             f"strides {levels[j].stride} and {levels[j + 1].stride}; use attn_mask_rule="
                             "'probability-mean' with this backbone")
        maps[j] = pooling_step(parent_rows(scene[k + 1], scene[k], 2), len(scene[k]))
    return maps


def pooling_step(parent: torch.Tensor, n_parents: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (parent, counts) of one averaging step (nested_mean's): parent (M,) each voxel's row among the
    n_parents coarser voxels, counts (n_parents,) how many voxels each holds (at least 1)."""
    return parent, torch.bincount(parent, minlength=n_parents).clamp(min=1)


def nested_mean(values: torch.Tensor, steps: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Returns values (Q, M) averaged over the children of each coarser voxel, one (parent, counts) step of
    child_to_parent's after the other (Mask3D's repeated MinkowskiAvgPooling(kernel_size=2, stride=2)): (Q, M_l)."""
    for parent, counts in steps:
        values = values.new_zeros(values.shape[0], counts.shape[0]).index_add_(1, parent, values) / counts
    return values


def position_frame(xyz: torch.Tensor, scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (lo, hi) (3,) that positions xyz (K, 3) are normalised by: the scene's box (scale None,
    Mask3D), or the cube of side `scale` from the box's low corner, so that one length means one thing in a
    crop and in a whole scene."""
    lo = xyz.amin(0)
    return lo, (xyz.amax(0) if scale is None else lo + scale)


def normalise_positions(xyz: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Returns xyz (K, 3) mapped per axis from the box [lo, hi] to [0, 1] (a flat axis maps to 0)."""
    return (xyz - lo) / (hi - lo).clamp(min=1e-6)


class FourierEncoding(nn.Module):
    """Random Fourier features [sin 2pi xB, cos 2pi xB] of normalised positions (K, 3) -> (K, dim)."""

    def __init__(self, dim: int, scale: float, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("basis", torch.randn(3, dim // 2, generator=g) * scale)
        self.dim = dim

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        proj = 2 * math.pi * xyz @ self.basis
        enc = torch.cat([proj.sin(), proj.cos()], dim=1)
        if enc.shape[1] < self.dim:  # odd dim: pad one zero column
            enc = torch.cat([enc, enc.new_zeros(enc.shape[0], 1)], dim=1)
        return enc


def fourier_kernel(enc_a: torch.Tensor, enc_b: torch.Tensor) -> torch.Tensor:
    """Returns (A, B) mean over frequencies f of cos(2 pi (a - b) . B_f), from FourierEncoding rows
    enc_a (A, D) and enc_b (B, D): a shift-invariant kernel, 1 where a = b, near 0 far apart."""
    freqs = enc_a.shape[1] // 2
    return (enc_a[:, : 2 * freqs] @ enc_b[:, : 2 * freqs].T) / freqs


class _AttentionLayer(nn.Module):
    """Post-norm attention with positional encodings added to queries and keys (Mask3D's layers)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tgt, memory, query_pos, key_pos, attn_mask=None):
        out, _ = self.attn(
            (tgt + query_pos)[None],
            (memory + key_pos)[None],
            memory[None],
            attn_mask=attn_mask,
            need_weights=False,
        )
        return self.norm(tgt + self.dropout(out[0]))


class _FFNLayer(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tgt):
        return self.norm(tgt + self.dropout(self.net(tgt)))


class QueryDecoder(nn.Module):
    """Instance queries refined by masked cross-attention to each backbone level, self-attention and FFN."""

    def __init__(self, config: DecoderConfig, level_channels: list[int], mask_channels: int) -> None:
        super().__init__()
        self.config = config
        d = config.hidden_dim
        if d % config.num_heads:
            raise ValueError(f"hidden_dim {d} must be divisible by num_heads {config.num_heads}")
        bad = [lvl for lvl in config.levels if not 0 <= lvl < len(level_channels)]
        if bad:
            raise ValueError(f"decoder levels {bad} out of range: the backbone has {len(level_channels)} levels")
        if config.sample_sizes is not None and len(config.sample_sizes) != len(config.levels):
            raise ValueError(
                f"sample_sizes has {len(config.sample_sizes)} entries: give one per backbone level the decoder attends "
                f"({len(config.levels)}, levels {tuple(config.levels)} in that order), or None to attend every voxel"
            )
        # Seeds the training-time key sampling of the next forward passes (engine.module sets it per step from the
        # preset's seed, epoch, batch and rank, so a resumed run draws what the uninterrupted one did); None: torch's
        # global RNG of the features' device.
        self.sample_seed: int | None = None
        self.pos_enc = FourierEncoding(d, config.fourier_scale, config.fourier_seed)
        self.query_projection = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))
        self.mask_features_head = nn.Linear(mask_channels, d)
        self.query_features_head = nn.Linear(mask_channels, d) if config.query_features else None
        self.spatial_enc = None
        if config.spatial_prior:
            self.spatial_enc = FourierEncoding(config.spatial_dim, config.spatial_scale, config.fourier_seed + 1)
            self.spatial_gain = nn.Parameter(torch.tensor(6.0))  # with the bias: logit +3 at the query, ~-3 far away
            self.spatial_bias = nn.Parameter(torch.tensor(-3.0))
            self.spatial_head = None
            if config.spatial_relative:
                freqs = config.spatial_dim // 2
                self.spatial_head = nn.Linear(d, 2 * freqs)  # [r_sin, r_cos] per query, zero: the blob
                nn.init.zeros_(self.spatial_head.weight)
                nn.init.zeros_(self.spatial_head.bias)
        # one per attended level (Mask3D's lin_squeeze): a backbone level never attended has none, which DDP would
        # refuse as a parameter without a gradient
        self.level_projection = nn.ModuleList([nn.Linear(level_channels[lvl], d) for lvl in config.levels])
        passes = 1 if config.shared_decoder else config.num_decoders
        n_layers = passes * len(config.levels)
        h, ff, p = config.num_heads, config.dim_feedforward, config.dropout
        self.cross_attention = nn.ModuleList([_AttentionLayer(d, h, p) for _ in range(n_layers)])
        self.self_attention = nn.ModuleList([_AttentionLayer(d, h, p) for _ in range(n_layers)])
        self.ffn = nn.ModuleList([_FFNLayer(d, ff, p) for _ in range(n_layers)])
        self.decoder_norm = nn.LayerNorm(d)
        self.mask_embed_head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))
        self.objectness_head = nn.Linear(d, 1)
        self.class_head = nn.Linear(d, config.num_classes + 1) if config.num_classes > 0 else None

    def forward(self, features: BackboneOutput) -> DecoderOutput:
        """Returns mask, objectness and class predictions for every scene of the backbone output."""
        finest = features.levels[-1]
        scenes = int(finest.coords[:, 0].max()) + 1
        num_queries = self.num_queries(torch.bincount(finest.coords[:, 0], minlength=scenes))
        generator = None
        if self.training and self.config.sample_sizes is not None and self.sample_seed is not None:
            generator = torch.Generator(device=finest.feats.device).manual_seed(self.sample_seed)
        per_scene = [self._scene(features, b, num_queries, generator) for b in range(scenes)]
        steps = len(per_scene[0][0])
        preds = []
        for s in range(steps):
            masks = [scene[0][s][0] for scene in per_scene]
            obj = torch.stack([scene[0][s][1] for scene in per_scene])
            cls = torch.stack([scene[0][s][2] for scene in per_scene]) if self.class_head is not None else None
            preds.append(Prediction(masks, obj, cls))
        return DecoderOutput(final=preds[-1], aux=preds[:-1], query_xyz=[scene[1] for scene in per_scene])

    def num_queries(self, voxels_per_scene: torch.Tensor) -> int:
        """Returns the query count for a batch whose scenes have voxels_per_scene (B,) input voxels."""
        cfg = self.config
        if cfg.voxels_per_query is None:
            return cfg.num_queries
        return max(cfg.num_queries, math.ceil(int(voxels_per_scene.max()) / cfg.voxels_per_query))

    def _scene(self, features: BackboneOutput, b: int, num_queries: int, generator: torch.Generator | None = None):
        cfg = self.config
        finest = features.levels[-1]
        rows = finest.coords[:, 0] == b
        fine_coords = finest.coords[rows]
        xyz = fine_coords[:, 1:].float() + 0.5  # voxel centres in input-voxel units
        lo, hi = position_frame(xyz, cfg.position_scale)
        mask_feats = self.mask_features_head(finest.feats[rows])  # (M_b, d)

        memories, key_pos, parents = [], [], []
        pooling = child_to_parent(features, b, min(cfg.levels)) if cfg.attn_mask_rule == "mask3d" else {}
        for i, lvl in enumerate(cfg.levels):
            level = features.levels[lvl]
            lrows = level.coords[:, 0] == b
            lcoords = level.coords[lrows]
            centres = (lcoords[:, 1:].float() + 0.5) * level.stride
            memories.append(self.level_projection[i](level.feats[lrows]))
            key_pos.append(self.pos_enc(normalise_positions(centres, lo, hi)))
            if cfg.attn_mask_rule == "mask3d":  # the 2x steps from the input voxels up to this level, fine to coarse
                parents.append([pooling[j] for j in range(len(features.levels) - 2, lvl - 1, -1)])
            else:  # one step: every input voxel straight into its voxel of this level
                parents.append([pooling_step(parent_rows(fine_coords, lcoords, level.stride), len(lcoords))])

        q_idx = fps(xyz, num_queries)
        query_xyz = normalise_positions(xyz[q_idx], lo, hi)
        query_pos = self.query_projection(self.pos_enc(query_xyz))
        if self.query_features_head is not None:  # Mask3D use_np_features: distinct queries from the start
            queries = self.query_features_head(finest.feats[rows][q_idx])
        else:  # Mask3D's non-parametric queries start at zero
            queries = torch.zeros_like(query_pos)

        spatial = None  # (query, voxel) Fourier encodings of the spatial prior
        if self.spatial_enc is not None:  # isotropic positions: the kernel is round in metres
            enc = self.spatial_enc((xyz - lo) / (hi - lo).max().clamp(min=1e-6))
            spatial = (enc[q_idx], enc)

        steps = []
        pred = self._predict(queries, mask_feats, spatial)
        for p in range(cfg.num_decoders):
            for i in range(len(cfg.levels)):
                layer = (0 if cfg.shared_decoder else p) * len(cfg.levels) + i
                keys = self._sample_keys(memories[i], i, generator)
                attn_mask = self._attention_mask(pred[0], parents[i], keys)
                memory, pos = (memories[i], key_pos[i]) if keys is None else (memories[i][keys], key_pos[i][keys])
                queries = self.cross_attention[layer](queries, memory, query_pos, pos, attn_mask)
                queries = self.self_attention[layer](queries, queries, query_pos, query_pos)
                queries = self.ffn[layer](queries)
                pred = self._predict(queries, mask_feats, spatial)
                steps.append(pred)
        return steps, query_xyz

    def _predict(self, queries: torch.Tensor, mask_feats: torch.Tensor,
                 spatial: tuple[torch.Tensor, torch.Tensor] | None = None):
        q = self.decoder_norm(queries)
        masks = self.mask_embed_head(q) @ mask_feats.T  # (Q, M_b)
        if spatial is not None:
            masks = masks + self._spatial_prior(q, *spatial)
        obj = self.objectness_head(q)[:, 0]
        cls = self.class_head(q) if self.class_head is not None else None
        return masks, obj, cls

    def _spatial_prior(self, q: torch.Tensor, enc_q: torch.Tensor, enc_v: torch.Tensor) -> torch.Tensor:
        """Returns (Q, M) gain/F sum_f [(1 + r_cos) cos + r_sin sin](2 pi (x_v - x_q) . B_f) + bias, r the
        queries' templates (spatial_relative; without it r = 0, the blob gain * kernel + bias), as one product:
        sin(v - q) and cos(v - q) expand into sin/cos of v times per-query sin/cos of q."""
        if self.spatial_head is None:
            return self.spatial_gain * fourier_kernel(enc_q, enc_v) + self.spatial_bias
        freqs = enc_v.shape[1] // 2
        r = self.spatial_head(q)
        r_sin, r_cos = r[:, :freqs], 1.0 + r[:, freqs : 2 * freqs]
        sin_q, cos_q = enc_q[:, :freqs], enc_q[:, freqs : 2 * freqs]
        sin_v, cos_v = enc_v[:, :freqs], enc_v[:, freqs : 2 * freqs]
        a_sin = r_cos * sin_q + r_sin * cos_q  # coefficient of sin_v
        a_cos = r_cos * cos_q - r_sin * sin_q  # coefficient of cos_v
        return self.spatial_gain / freqs * (a_sin @ sin_v.T + a_cos @ cos_v.T) + self.spatial_bias

    def _sample_keys(self, memory: torch.Tensor, level: int, generator: torch.Generator | None) -> torch.Tensor | None:
        """Returns the rows of one scene's memory (K, d) at attended level `level` (its index in `levels`) that a
        training step attends (DecoderConfig.sample_sizes): a uniform random subset when K exceeds the level's sample
        size, else None (every row). Drawn on the memory's device (randperm, as Mask3D; on CUDA it sorts random keys
        there, aten/src/ATen/native/cuda/Randperm.cu), from `generator` or that device's global RNG; K is the tensor's
        shape, so nothing is read back from the device."""
        sizes, n_keys = self.config.sample_sizes, memory.shape[0]
        if not self.training or sizes is None or n_keys <= sizes[level]:
            return None
        return torch.randperm(n_keys, generator=generator, device=memory.device)[: sizes[level]]

    def _attention_mask(self, mask_logits: torch.Tensor, steps: list[tuple[torch.Tensor, torch.Tensor]],
                        keys: torch.Tensor | None = None) -> torch.Tensor:
        """Returns (heads, Q, K) bool, True = not attended (pooled value < threshold, DecoderConfig.attn_mask_rule),
        over the level's voxels or, with `keys`, over those K rows of them (the pooling still averages every input
        voxel). steps: the pooling_step's from the input voxels up to the level, fine to coarse (nested_mean): one
        straight into the level for "probability-mean" (the mean of the mask probabilities), child_to_parent's 2x
        steps for "mask3d" (the sigmoid of the nested mean of the logits, computed in float)."""
        with torch.no_grad():
            if self.config.attn_mask_rule == "mask3d":
                pooled = nested_mean(mask_logits.float(), steps).sigmoid()
            else:
                pooled = nested_mean(mask_logits.sigmoid(), steps)
            blocked = pooled < self.config.attn_mask_threshold
            if keys is not None:  # Mask3D gathers the sampled rows, then applies its empty-row rule to them
                blocked = blocked[:, keys]
            # A query that would attend to nothing attends to everything (softmax over an empty set is NaN);
            # a mask, not boolean indexing, which would wait for the device
            blocked &= ~blocked.all(dim=1, keepdim=True)
        return blocked.repeat(self.config.num_heads, 1, 1)
