"""PointContrast (Xie et al., ECCV 2020): PointInfoNCE over matched points of two views of one scene.

    method = get_method("pointcontrast")
    config = method.default_config("cpu-small", epochs=2)
    result = method.pretrain(store, config, Path("runs/pointcontrast"), names=train_names)
    result.backbone      # checkpoints/pointcontrast-<dataset>-<hash>-backbone.ckpt, in checkpoints/index.json

Each step samples `num_pairs` matched voxels of the batch's view pairs (data.views: by default MSC-style crops of
the reconstructed scans; with views.source = "frames" and views.frames_root, the original's RGB-D frame pairs 25
frames apart with >= 30% overlap at 5 cm, see baselines.pairs), takes the backbone's L2-
normalised output features of both ends and applies PointInfoNCE at temperature τ: every other sampled point
of the batch is a negative. Input is geometry-only by default (the rgb channels zeroed, use_rgb=True keeps
them; on a colour-only input every channel is 1, as the released code's constant input); the backbone is
FreePoint's for the same TrainPreset, so it loads into the same fine-tuning model.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, model_serializer

from baselines.losses import point_info_nce
from baselines.pairs import PairModule, PairPretext
from freepoint_bench.config import omit_at_default
from freepoint_bench.data.views import PairViewConfig
from freepoint_bench.engine.presets import TrainPreset, get_preset
from freepoint_bench.pretext.training import OptimConfig, SampleBudget, sample_rows

# The paper's PointInfoNCE pretraining (the README runs scripts/ddp_local.sh on one server, scripts/ddp_launch.sh on
# SLURM; ddp_launch.sh is the one with trainer.trainer=PointNCELossTrainer): opt.max_iter=60000 of
# trainer.batch_size=32 over misc.num_gpus=8 (facebookresearch/PointContrast pretrain/pointcontrast/scripts/
# ddp_launch.sh, ddp_local.sh). The max_iter=100000 of pretrain/pointcontrast/ddp_train_local_scannet.sh (and its copy
# in scripts/) trains HardestContrastiveLossTrainer on ScanNetHardMatchPairDataset, the other loss; the 20000 of
# scripts/ddp_new_launch.sh is a sweep over both losses and datasets.
PAPER_BUDGET = SampleBudget(iterations=60_000, batch=32)


class PointContrastConfig(BaseModel):
    """A PointContrast run (the paper preset: the PointInfoNCE launcher scripts/ddp_launch.sh, see PRESETS)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    train: TrainPreset = get_preset("cpu-small")  # backbone, voxels, batch size, seed (FreePoint's presets)
    views: PairViewConfig = PairViewConfig()  # how the two views are cut; views.source frames: RGB-D pairs
    # SGD momentum 0.8, weight decay 1e-4 (config/defaults.yaml opt.momentum, opt.weight_decay; lr: see PRESETS);
    # ExponentialLR(opt.exp_gamma 0.99) stepped every trainer.lr_update_freq = 250 iterations of
    # trainer.batch_size = 32 scenes (pretrain/pointcontrast/scripts/ddp_launch.sh; the step: lib/ddp_trainer.py
    # PointNCELossTrainer.train; 32 is the global batch, ddp_data_loaders.make_data_loader gives each of
    # misc.num_gpus = 8 GPUs 32 // 8). reference_batch 32 counts the decay in samples seen, so the
    # rate falls as the original's over the same samples on any batch and device count (at batch 4 on one device
    # it fell to ~4e-9 of its start over the paper preset's run when counted in steps: issue 29). The original's
    # extra scheduler step at iteration 1 (a constant factor 0.99) is left out.
    # SGD without dampening: lib/ddp_trainer.py builds optim.SGD(lr, momentum, weight_decay) and never passes the
    # config's opt.sgd_dampening, so torch's default 0 is what trained (issue 29; OptimConfig's default is 0.1)
    optim: OptimConfig = OptimConfig(reference_batch=32, dampening=0.0)
    epochs: int = Field(10, ge=1)  # passes over the scans (paper preset: see PRESETS)
    temperature: float = Field(0.4, gt=0)  # misc.nceT of scripts/ddp_launch.sh (defaults.yaml: 0.07)
    # misc.npos (ddp_launch.sh): matched points sampled from each GPU's batch of 32 // 8 pairs, all in one softmax
    num_pairs: int = Field(4096, ge=2)
    # False: geometry-only input (rgb channels zeroed; with a colour-only input every channel 1, the original's
    # constant input: baselines.pairs.pair_sample); True feeds the colours
    use_rgb: bool = False
    # the original's budget in samples seen (PAPER_BUDGET); when set, the run trains the epochs it derives from the
    # pretraining scenes and `epochs` is not read. Left out of the record at None (configs keep their ids).
    budget: SampleBudget | None = None

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        return omit_at_default(self, handler(self), ("budget",))


PRESETS: dict[str, dict[str, Any]] = {
    # A few epochs of small views on the CPU: tests, demos, docs/studies/pretext-baselines.md.
    "cpu-small": {"epochs": 10, "views": {"max_points": 20_000}, "optim": {"lr": 0.1}},
    # The PointInfoNCE launcher facebookresearch/PointContrast pretrain/pointcontrast/scripts/ddp_launch.sh
    # (scripts/ddp_local.sh and ddp_train_local_scannet.sh, lr 0.1, train HardestContrastiveLossTrainer) with the
    # released code it runs (tests/baselines/test_paper_recipes.py holds each value with its file):
    "paper": {
        # its budget in samples (PAPER_BUDGET: 60k iterations x 32 pairs, 8 GPUs x 4): 1599 epochs over ScanNet's 1201
        # training scans, one view pair per scan per epoch; 4 pairs per device. BatchNorm momentum opt.bn_momentum
        # 0.05 (config/defaults.yaml, read by model/res16unet.py)
        "budget": PAPER_BUDGET.model_dump(), "train": {"batch_size": 4, "bn_momentum": 0.05},
        "optim": {"lr": 0.05},  # opt.lr=0.05 (ddp_launch.sh)
        # Geometry only: ddp_launch.sh's misc.use_color_feat=True and misc.free_rot=True are read by no code (not in
        # the released config/defaults.yaml either); lib/ddp_data_loaders.py ScanNetMatchPairDataset feeds a
        # "dummy color", feats np.ones((N, 3)) (plus Jitter's N(0, 0.01) on them, left out here)
        "use_rgb": False,
        # Each frame of a pair rotated on its own about a random axis by an angle in ±180° (trainer.
        # use_random_rotation True, rotation_range 360: sample_random_trans in lib/ddp_data_loaders.py), nothing
        # else: trainer.use_random_scale False (defaults.yaml), no flips, no position or colour noise
        "views": {"free_rotation": True, "tilt": 0.0, "scale_min": 1.0, "scale_max": 1.0, "flip": 0.0,
                  "jitter_sigma_m": 0.0, "color_shift": 0.0, "color_jitter": 0.0},
    },
}


class PointContrastModule(PairModule):
    """PointInfoNCE training of the backbone on batches of baselines.pairs.collate_pairs."""

    def __init__(self, config: PointContrastConfig | dict) -> None:
        config = config if isinstance(config, PointContrastConfig) else PointContrastConfig(**config)
        super().__init__(config.train, config.optim, {"config": config.model_dump(mode="json")})
        self.config = config

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Returns the PointInfoNCE loss of `num_pairs` matches sampled from the whole batch."""
        fa, fb = self.point_features(batch)
        matches = batch["matches"]
        pick = sample_rows(len(matches), self.config.num_pairs, self.config.train.seed, self.global_step,
                           self.global_rank, matches.device)
        if len(pick) < 2:  # no negatives: nothing to contrast (a degenerate batch keeps the graph alive)
            loss = (fa.sum() + fb.sum()) * 0.0
        else:
            m = matches[pick]
            loss = point_info_nce(fa[m[:, 0]], fb[m[:, 1]], self.config.temperature)
        return self.record({"loss": loss, "pairs": torch.tensor(float(len(pick)), device=loss.device)},
                           batch["num_scenes"])


class PointContrastPretext(PairPretext):
    """The `pointcontrast` pretext method."""

    name = "pointcontrast"
    config_cls = PointContrastConfig
    presets = PRESETS

    def build_module(self, config: PointContrastConfig) -> PointContrastModule:
        """Returns a fresh PointContrastModule."""
        return PointContrastModule(config)
