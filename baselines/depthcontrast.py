"""DepthContrast (Zhang et al., ICCV 2021), voxel format: MoCo instance discrimination of single views.

    method = get_method("depthcontrast")
    config = method.default_config("cpu-small")
    result = method.pretrain(store, config, Path("runs/depthcontrast"), names=train_names)

Each scene gives one partial view (a crop of `views.crop_fraction`, in place of the original's single depth
frame) augmented twice (data.views.same_view_pair). The query encoder (backbone, global max-pool of its last
decoder features per scene as the released Res16UNet trunk, a Linear-Linear head, L2 norm) embeds one
augmentation; the key encoder, a momentum copy (θ_k ← m θ_k + (1 - m) θ_q before each step), embeds the
other; the InfoNCE positive is the own key and the negatives the queue of earlier keys, which then takes this
step's keys (gathered over all DDP ranks). Only the query backbone is published. A view keeps at most
views.max_points points (a seeded uniform subsample after its grid sample: the released pipeline's 20,000-point
views), so a batch's voxels are bounded by batch_size x max_points whatever the scenes' size. The input carries the
colours by default, as the released voxel input (colour / 255 - 0.5 of the RGB-D frame's points);
use_rgb=False zeroes them. Each rank normalises its own scenes: the released code skips MoCo's shuffled BN
for voxels ("does not give performance gain").
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_serializer
from torch import nn

from baselines.losses import KeyQueue, moco_info_nce, momentum_update
from baselines.pairs import PairPretext
from freepoint_bench.config import omit_at_default
from freepoint_bench.data.views import ViewConfig
from freepoint_bench.engine.presets import TrainPreset, get_preset
from freepoint_bench.pretext.training import BackboneModule, OptimConfig, SampleBudget

# The original's budget is beyond one node, so it is scaled and said so: configs/point_vox_template.yaml trains
# optimizer.num_epochs=1000 at dataset.BATCHSIZE_PER_REPLICA=32 per GPU, the README on 4 nodes x 8 GPUs (batch 1024,
# scripts/pretrain_node4.sh), its paper's numbers from the epoch-400 checkpoint (README), each epoch every 10th depth
# frame of the ScanNet scans extracted (data/scannet/extract_pointcloud.py; the frame count is not in the repository)
# (facebookresearch/DepthContrast). Here: one replica's 32 views a step for 37,500 steps, 1.2M views, which is the
# 1000 epochs over ScanNet's 1201 training scans the paper preset trained before budgets were counted in samples.
PAPER_BUDGET = SampleBudget(iterations=37_500, batch=32)


class DepthContrastConfig(BaseModel):
    """A DepthContrast run (defaults: the released configs/point_vox_template.yaml)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    train: TrainPreset = get_preset("cpu-small")  # backbone, voxels, batch size, seed (FreePoint's presets)
    # The one crop and its two augmentations (data.views), each capped at 20,000 points: the released pipeline
    # resamples every view to 20,000 points (ToTensor in datasets/transforms/augment3d.py; the template's
    # randomcuboid npoints 10000 is the crop's least size, multiscale then picks 5k-20k). Uncapped, the paper
    # preset's 32 crops of whole ScanNet rooms at 2 cm reach millions of voxels per step.
    views: ViewConfig = ViewConfig(max_points=20_000)
    # SGD 0.12 momentum 0.9 weight decay 1e-4, cosine to 0.00012 (optimizer of the template)
    optim: OptimConfig = OptimConfig(lr=0.12, momentum=0.9, dampening=0.0, schedule="cosine", final_lr=0.00012)
    epochs: int = Field(10, ge=1)  # optimizer.num_epochs (paper preset: 1000)
    temperature: float = Field(0.1, gt=0)  # NCE_LOSS.TEMPERATURE
    queue_size: int = Field(131_072, ge=1)  # NCE_LOSS.NUM_NEGATIVES
    embedding_dim: int = Field(128, ge=1)  # NCE_LOSS.EMBEDDING_DIM
    head_hidden: int = Field(256, ge=1)  # args_vox.mlp_dim [256, 256, 128]: the MLP's hidden width
    # The voxel trunk's head is SMLP(mlp_dim) with its defaults use_relu=False, use_bn=False: Linear-Linear
    # (Res16UNetBase.network_initialization); the point trunk's MLP puts a ReLU between them
    head_relu: bool = False
    momentum: float = Field(0.999, ge=0, lt=1)  # MoCo key-encoder momentum
    use_rgb: bool = True  # the released voxel input is the points' colour (depth_dataset: feats = rgb)
    # a budget in samples seen (PAPER_BUDGET, scaled); when set, the run trains the epochs it derives from the
    # pretraining scenes and `epochs` is not read. Left out of the record at None (configs keep their ids).
    budget: SampleBudget | None = None

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        return omit_at_default(self, handler(self), ("budget",))


PRESETS: dict[str, dict[str, Any]] = {
    # A small queue (a batch of 2 scenes gives 2 keys per step: 16 fill in 8 steps) and few epochs on the CPU.
    "cpu-small": {"epochs": 10, "queue_size": 16},
    # facebookresearch/DepthContrast configs/point_vox_template.yaml and the code it runs (tests/baselines/
    # test_paper_recipes.py holds each value with its file):
    "paper": {
        # BATCHSIZE_PER_REPLICA 32 in the template, one replica per device here; the scaled budget (PAPER_BUDGET:
        # 37,500 steps of 32): 1000 epochs over ScanNet's 1201 training scans.
        "budget": PAPER_BUDGET.model_dump(), "train": {"batch_size": 32},
        # The voxel views' augmentations (POINT_TRANSFORMS, datasets/transforms/augment3d.py): RandomScale
        # U(0.8, 1.2), RandomFlip of x and of y with p 0.5 each (the views' default); RandomRotateAll: ±π about one
        # of x, y, z (rotate_one_axis, its axis draws as the code makes them), no tilts; no position or colour noise
        # (the voxel input's colour transforms and the voxelizer's augmentation run only for split "TRAIN" in
        # datasets/depth_dataset.py, whose split is "train")
        "views": {"scale_min": 0.8, "scale_max": 1.2, "jitter_sigma_m": 0.0, "color_shift": 0.0, "color_jitter": 0.0,
                  "rotate_one_axis": True, "rotate_z": math.pi, "tilt": 0.0},
    },
}


def projection_head(width: int, hidden: int, dim: int, relu: bool) -> nn.Sequential:
    """Returns the MLP head width -> hidden -> dim: two Linear layers, a ReLU between them when `relu`."""
    middle = [nn.ReLU(inplace=True)] if relu else []
    return nn.Sequential(nn.Linear(width, hidden), *middle, nn.Linear(hidden, dim))


class DepthContrastModule(BackboneModule):
    """MoCo training of backbone + head against a momentum key encoder and a key queue."""

    def __init__(self, config: DepthContrastConfig | dict) -> None:
        config = config if isinstance(config, DepthContrastConfig) else DepthContrastConfig(**config)
        super().__init__(config.train, config.optim, {"config": config.model_dump(mode="json")})
        self.config = config
        width = self.backbone.out_channels
        self.head = projection_head(width, config.head_hidden, config.embedding_dim, config.head_relu)
        self.key_backbone = copy.deepcopy(self.backbone)
        self.key_head = copy.deepcopy(self.head)
        for p in [*self.key_backbone.parameters(), *self.key_head.parameters()]:
            p.requires_grad_(False)
        self.queue = KeyQueue(config.queue_size, config.embedding_dim, seed=config.train.seed)

    def trainable_parameters(self) -> Any:
        """Returns the query encoder's parameters (the key encoder follows by momentum)."""
        return [*self.backbone.parameters(), *self.head.parameters()]

    @staticmethod
    def embed(backbone: nn.Module, head: nn.Module, coords: torch.Tensor, feats: torch.Tensor,
              num_scenes: int) -> torch.Tensor:
        """Returns (B, D) L2-normalised embeddings: per scene the max over its voxels' backbone features, then
        the head."""
        out = backbone(coords, feats).feats
        scene = coords[:, 0].long()
        pooled = out.new_full((num_scenes, out.shape[1]), float("-inf"))
        pooled = pooled.scatter_reduce(0, scene[:, None].expand_as(out), out, reduce="amax", include_self=True)
        return F.normalize(head(pooled), dim=1)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Returns the MoCo InfoNCE loss of the batch's scenes; updates the key encoder and the queue."""
        n = batch["num_scenes"]
        q = self.embed(self.backbone, self.head, batch["a_coords"], batch["a_feats"], n)
        with torch.no_grad():
            momentum_update(self.key_backbone, self.backbone, self.config.momentum)
            momentum_update(self.key_head, self.head, self.config.momentum)
            k = self.embed(self.key_backbone, self.key_head, batch["b_coords"], batch["b_feats"], n)
        loss = moco_info_nce(q, k, self.queue.keys.clone(), self.config.temperature)
        with torch.no_grad():
            accuracy = ((q * k).sum(1, keepdim=True) > q @ self.queue.keys.T).all(dim=1).float().mean()
            keys = self.all_gather(k) if self.trainer.world_size > 1 else k
            self.queue.enqueue(keys.reshape(-1, k.shape[1]))
        return self.record({"loss": loss, "accuracy": accuracy}, n)


class DepthContrastPretext(PairPretext):
    """The `depthcontrast` pretext method."""

    name = "depthcontrast"
    config_cls = DepthContrastConfig
    presets = PRESETS
    mode = "same"  # one crop, two augmentations

    def build_module(self, config: DepthContrastConfig) -> DepthContrastModule:
        """Returns a fresh DepthContrastModule."""
        return DepthContrastModule(config)
