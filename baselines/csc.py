"""Contrastive Scene Contexts (CSC; Hou et al., CVPR 2021): PointInfoNCE within ShapeContext partitions.

    method = get_method("csc")
    config = method.default_config("cpu-small", num_partitions=4)   # the fast 2 x 2 variant
    result = method.pretrain(store, config, Path("runs/csc"), names=train_names)

Per scene of a batch, `num_points` matched voxels are sampled; around each anchor the space is cut into
ShapeContext partitions (8: 2 radial shells [r1, r2), [r2, ∞) x 4 angular bins, the released checkpoints; or
4: above / below x inner / outer, CSC's fast_partition) in voxel units, and PointInfoNCE is computed once per
partition with only that partition's points as negatives (logits of the others masked out, the positive kept);
the scene's loss is the mean over partitions, the batch's the mean over scenes. world_space=True (the released
trainer's rule) partitions in the scene's pre-augmentation frame, False in view a's voxel frame.
views.source = "frames" (with views.frames_root) trains on RGB-D frame pairs as the original (baselines.pairs);
world_space then partitions in world coordinates.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_serializer

from baselines.losses import partitioned_info_nce, shape_context_partitions, shape_context_partitions_fast
from baselines.pairs import PairModule, PairPretext
from freepoint_bench.config import omit_at_default
from freepoint_bench.data.views import PairViewConfig
from freepoint_bench.engine.presets import TrainPreset, get_preset
from freepoint_bench.pretext.training import OptimConfig, SampleBudget, sample_rows

# The released pretraining: opt.max_iter=100000 of trainer.batch_size=32 over misc.num_gpus=8
# (facebookresearch/ContrastiveSceneContexts pretrain/contrastive_scene_contexts/scripts/pretrain_sparseconv.sh).
PAPER_BUDGET = SampleBudget(iterations=100_000, batch=32)


class CSCConfig(BaseModel):
    """A CSC run (defaults: the released pretraining script and ShapeContext settings)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    train: TrainPreset = get_preset("cpu-small")  # backbone, voxels, batch size, seed (FreePoint's presets)
    views: PairViewConfig = PairViewConfig()  # how the two views are cut; views.source frames: RGB-D pairs
    # SGD lr 0.1 (pretrain_sparseconv.sh opt.lr), momentum 0.8, weight decay 1e-4 (config/defaults.yaml);
    # ExponentialLR(opt.exp_gamma 0.99) stepped every trainer.lr_update_freq = 1000 iterations
    # of trainer.batch_size = 32 scenes over misc.num_gpus = 8 (scripts/pretrain_sparseconv.sh; the step:
    # lib/ddp_trainer.py PointNCELossTrainer.train; ddp_train.py gives each GPU 32 / 8). reference_batch 32 counts
    # the decay in samples seen (at batch 4 on one device, counted in steps, it fell to ~3e-4 of its start over
    # the paper preset's run: issue 29); the extra step at iteration 1 (a factor 0.99) is left out.
    # SGD without dampening: lib/ddp_trainer.py passes only lr, momentum and weight_decay to optim.SGD (issue 29)
    optim: OptimConfig = OptimConfig(decay_every=1000, reference_batch=32, dampening=0.0)
    epochs: int = Field(10, ge=1)  # passes over the scans (paper preset: see PRESETS)
    temperature: float = Field(0.4, gt=0)  # misc.nceT
    num_points: int = Field(4096, ge=2)  # misc.npos: matched points sampled per scene (PartitionPointNCELossTrainer)
    num_partitions: Literal[8, 4] = 8  # 8: 2 radial x (nbins_xy 2 x nbins_zy 2) angular; 4: fast_partition
    r1: float = Field(2.0, ge=0)  # shape_context.r1, inner radius in voxels (paper preset: in metres, see PRESETS)
    r2: float = Field(20.0, gt=0)  # shape_context.r2, outer radius in voxels
    # True: partitions in the pre-augmentation frame, as the released trainer always does (lib/ddp_trainer.py
    # apply_transform undoes each view's T0 before ShapeContext; there is no data.world_space setting)
    world_space: bool = True
    use_rgb: bool = True  # the released trainer feeds colours (misc.use_color_feat)
    # the original's budget in samples seen (PAPER_BUDGET); when set, the run trains the epochs it derives from the
    # pretraining scenes and `epochs` is not read. Left out of the record at None (configs keep their ids).
    budget: SampleBudget | None = None

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        return omit_at_default(self, handler(self), ("budget",))


PRESETS: dict[str, dict[str, Any]] = {
    # 1024 anchors per scene: the (P, P) partition matrix of 4096 takes ~5 s per scene on one CPU core
    "cpu-small": {"epochs": 10, "num_points": 1024, "views": {"max_points": 20_000}},
    # facebookresearch/ContrastiveSceneContexts pretrain/contrastive_scene_contexts/scripts/pretrain_sparseconv.sh and
    # the code it runs (tests/baselines/test_paper_recipes.py holds each value with its file):
    "paper": {
        # the launch script's budget in samples (PAPER_BUDGET: 100k iterations x 32 pairs, 8 GPUs x 4): 2665 epochs
        # over ScanNet's 1201 training scans; 4 pairs per device (ddp_train.py: 32 / 8). BatchNorm momentum
        # opt.bn_momentum 0.05 (config/defaults.yaml, read by model/res16unet.py)
        "budget": PAPER_BUDGET.model_dump(), "train": {"batch_size": 4, "bn_momentum": 0.05},
        # shape_context.r1 2 and r2 20 voxels of its data.voxel_size 0.025: 5 cm and 0.5 m, here in 2 cm voxels
        "r1": 2.5, "r2": 25.0,
        # Views as lib/ddp_data_loaders.py makes them (data.random_rotation_z True, random_rotation_xyz False in
        # defaults.yaml): rotation about z in ±π and about x and y in ±π/64 (sample_random_trans_z; the views'
        # defaults), no scale (make_data_loader: random_scale=False), no flips, no position noise; colour noise
        # Jitter N(0, 0.01) on 0..255 colours (lib/transforms.py), 0.01 / 255 on 0..1 colours (with p 0.95 there)
        "views": {"scale_min": 1.0, "scale_max": 1.0, "flip": 0.0, "jitter_sigma_m": 0.0, "color_shift": 0.0,
                  "color_jitter": 0.01 / 255},
    },
}


class CSCModule(PairModule):
    """Partitioned PointInfoNCE training of the backbone on batches of baselines.pairs.collate_pairs."""

    def __init__(self, config: CSCConfig | dict) -> None:
        config = config if isinstance(config, CSCConfig) else CSCConfig(**config)
        super().__init__(config.train, config.optim, {"config": config.model_dump(mode="json")})
        self.config = config

    def partitions(self, xyz: torch.Tensor) -> torch.Tensor:
        """Returns the (P, P) partition of every point around every anchor of xyz (P, 3) voxel units."""
        c = self.config
        if c.num_partitions == 4:
            return shape_context_partitions_fast(xyz, c.r1, c.r2)
        return shape_context_partitions(xyz, c.r1, c.r2, nbins_xy=2, nbins_zy=2)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Returns the mean over the batch's scenes of their partitioned PointInfoNCE."""
        fa, fb = self.point_features(batch)
        c = self.config
        position = batch["match_origin"] if c.world_space else batch["match_coords"]
        losses = []
        for b in range(batch["num_scenes"]):
            rows = torch.nonzero(batch["match_scene"] == b).flatten()
            rows = rows[sample_rows(len(rows), c.num_points, c.train.seed, self.global_step * 1024 + b,
                                    self.global_rank, rows.device)]
            if len(rows) < 2:
                continue
            m = batch["matches"][rows]
            losses.append(partitioned_info_nce(fa[m[:, 0]], fb[m[:, 1]], self.partitions(position[rows]),
                                               c.num_partitions, c.temperature))
        loss = torch.stack(losses).mean() if losses else (fa.sum() + fb.sum()) * 0.0
        return self.record({"loss": loss}, batch["num_scenes"])


class CSCPretext(PairPretext):
    """The `csc` pretext method."""

    name = "csc"
    config_cls = CSCConfig
    presets = PRESETS

    def build_module(self, config: CSCConfig) -> CSCModule:
        """Returns a fresh CSCModule."""
        return CSCModule(config)
