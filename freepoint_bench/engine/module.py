"""The LightningModules of training: LossTrackingModule, the base every training module shares (loss logging,
per-scene epoch means over all ranks, the loss history in Lightning's checkpoints, per-epoch progress), and
SegmenterModule, segmenter training on it: forward, Hungarian matching, eq. 7 loss, AdamW + schedule.

Schedule (per optimiser step, documented because the paper gives none): `onecycle` (Mask3D's choice) warms
the LR up from lr/25 to `lr` over the first `onecycle_pct_start` of the steps and anneals it with a cosine
to lr/25/1e4 (torch's initial lr / final_div_factor); `cosine` anneals from `lr` to 0; `constant` keeps `lr`. Each
training step (FreePoint step 1 and step 2) gets its own optimiser and schedule over its own budget: its epochs'
steps, or the trainer's max_steps when it sets one (fine-tuning's max_steps, engine.trainer.make_trainer), so the
last optimiser step runs at OneCycle's final rate (tests/harness/test_budget.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from freepoint_bench.atomic import stable_hash
from freepoint_bench.engine.checkpoints import load_model
from freepoint_bench.engine.data import feature_channels
from freepoint_bench.engine.presets import TrainPreset
from freepoint_bench.models.backbone import BackboneConfig
from freepoint_bench.models.checkpoint import RESUME_SHA256_KEY, resume_sha256
from freepoint_bench.models.criterion import SetCriterion
from freepoint_bench.models.decoder import DecoderConfig
from freepoint_bench.models.losses import LossConfig
from freepoint_bench.models.segmenter import (
    InstanceSegmenter,
    SegmenterConfig,
    SegmenterOutput,
    build_segmenter,
)

HISTORY_KEY = "freepoint_bench_loss_history"


def segmenter_config(preset: TrainPreset, num_classes: int = 0) -> SegmenterConfig:
    """Returns the models' SegmenterConfig a preset describes (num_classes 0 = class-agnostic)."""
    return SegmenterConfig(
        backbone=BackboneConfig(
            preset=preset.backbone,
            in_channels=feature_channels(preset),
            backend=preset.backend,
            voxel_size=preset.voxel_size_m,
            stem_kernel_size=preset.stem_kernel_size,
            bn_momentum=preset.bn_momentum,
            widen=preset.widen,
            # the stride-16 bottleneck is a level only when the decoder attends it (DecoderConfig.levels (0, 1, 2, 3)
            # then picks strides 16, 8, 4, 2, Mask3D's hlevels; without it 8, 4, 2, 1)
            bottleneck_level=preset.attention_levels == "16-2",
        ),
        decoder=DecoderConfig(
            hidden_dim=preset.decoder_hidden,
            num_queries=preset.num_queries,
            num_heads=preset.decoder_heads,
            dim_feedforward=preset.decoder_ffn,
            num_decoders=preset.decoder_layers,
            num_classes=num_classes,
            query_features=preset.query_features,
            spatial_prior=preset.spatial_prior,
            spatial_scale=preset.spatial_scale,
            spatial_relative=preset.spatial_relative,
            position_scale=None if preset.position_scale_m is None else preset.position_scale_m / preset.voxel_size_m,
            voxels_per_query=preset.voxels_per_query,
            sample_sizes=preset.attention_sample_sizes,
            attn_mask_rule=preset.attention_mask_rule,
        ),
    )


def sample_seed(seed: int, epoch: int, batch: int, rank: int) -> int:
    """Returns the seed of one training step's attention sampling (models.decoder.QueryDecoder.sample_seed)."""
    return int(stable_hash(seed, epoch, batch, rank, length=15), 16)


def segmenter_from_preset(preset: TrainPreset, num_classes: int = 0) -> InstanceSegmenter:
    """Returns a freshly initialised segmenter (backbone + query decoder) for `preset`."""
    return build_segmenter(segmenter_config(preset, num_classes))


class LossTrackingModule(pl.LightningModule):
    """A LightningModule that logs its loss terms and keeps their per-scene epoch means over all ranks.

    A subclass's training_step returns `self.record(terms, size)`: every term is logged (train/<name>) and added
    to the running epoch means in `loss_history`, which Lightning's checkpoints carry (a resumed run keeps the
    whole history; each checkpoint also records the sha256 a resume checks). `loss_summary` gives the metrics a
    finished stage records; `progress_callback` reports each epoch's loss.
    """

    def __init__(self) -> None:
        super().__init__()
        self.loss_history: list[dict[str, float]] = []  # per epoch: {"epoch", "loss", <term>: mean per scene}
        self._sums: dict[str, float] = {}
        self._scenes = 0.0

    def record(self, terms: dict[str, torch.Tensor], size: int) -> torch.Tensor:
        """Returns terms["loss"] after logging every term and adding it (weighted by `size` scenes) to the
        running epoch means over all ranks."""
        self.log_terms(terms, size)
        self.accumulate_losses(terms, size)
        return terms["loss"]

    def log_terms(self, terms: dict[str, torch.Tensor | float], size: int) -> None:
        """Logs every term as train/<name> (weighted by `size` scenes), synced over ranks: the loss each step
        and each epoch, the others each epoch."""
        for name, value in terms.items():
            # sync_dist reduces through the process group, and NCCL takes only tensors on the rank's GPU: a term
            # computed on the CPU (a count, a host-side statistic) would crash the epoch-end reduction
            value = torch.as_tensor(value).detach().to(self.device)
            self.log(f"train/{name}", value, batch_size=size, prog_bar=name == "loss", on_step=name == "loss",
                     on_epoch=True, sync_dist=True)

    def accumulate_losses(self, terms: dict[str, torch.Tensor], size: int) -> None:
        """Adds a batch's loss terms (weighted by its `size` scenes) to the running epoch means in loss_history."""
        # the history holds the per-scene mean over all ranks (DDP: every rank runs the same number of steps,
        # as the distributed sampler pads its shards), so rank 0's checkpoint records the whole data's losses
        device = terms["loss"].device
        values = torch.stack([torch.as_tensor(v).detach().float().to(device) * size for v in terms.values()]
                             + [torch.tensor(float(size), device=device)])
        if self.trainer.world_size > 1:
            values = self.trainer.strategy.reduce(values, reduce_op="sum")
        *sums, scenes = values.tolist()
        for name, value in zip(terms, sums, strict=True):
            self._sums[name] = self._sums.get(name, 0.0) + value
        self._scenes += scenes
        # the running mean of this epoch is always in the history, so an epoch-end checkpoint (written
        # by ModelCheckpoint before this module's on_train_epoch_end) already carries it
        entry = {"epoch": float(self.current_epoch), **self.epoch_losses()}
        if self.loss_history and self.loss_history[-1]["epoch"] == entry["epoch"]:
            self.loss_history[-1] = entry
        else:
            self.loss_history.append(entry)

    def epoch_losses(self) -> dict[str, float]:
        """Returns the per-scene mean of each loss term over the running epoch (all ranks)."""
        return {k: v / max(self._scenes, 1) for k, v in self._sums.items()}

    def on_train_epoch_start(self) -> None:
        self._sums, self._scenes = {}, 0.0

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[HISTORY_KEY] = [dict(h) for h in self.loss_history]
        # Lightning calls this hook last, so every part is there: weights, optimiser and scheduler state, loop
        # counters, callbacks; checked before a resume (engine.trainer.last_checkpoint)
        checkpoint[RESUME_SHA256_KEY] = resume_sha256(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.loss_history = [dict(h) for h in checkpoint.get(HISTORY_KEY, [])]

    def loss_summary(self) -> dict[str, Any]:
        """Returns {"loss_first_epoch", "loss_last_epoch", "final_losses", "loss_history"} of the run."""
        if not self.loss_history:
            return {"loss_first_epoch": math.nan, "loss_last_epoch": math.nan, "final_losses": {},
                    "loss_history": []}
        return {
            "loss_first_epoch": self.loss_history[0]["loss"],
            "loss_last_epoch": self.loss_history[-1]["loss"],
            "final_losses": {k: v for k, v in self.loss_history[-1].items() if k != "epoch"},
            "loss_history": [h["loss"] for h in self.loss_history],
        }

    def progress_callback(self, progress: Callable[[str, int, int, str], None], stage: str,
                          epochs: int) -> Callback:
        """Returns a callback reporting progress(stage, epoch, epochs, "loss x.xxxx") after each epoch."""
        return EpochProgress(progress, stage, epochs)


class EpochProgress(Callback):
    """Reports progress(stage, epoch, epochs, "loss x.xxxx") after each epoch of a LossTrackingModule (rank 0)."""

    def __init__(self, progress: Callable[[str, int, int, str], None], stage: str, epochs: int) -> None:
        self.progress, self.stage, self.epochs = progress, stage, epochs

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and isinstance(pl_module, LossTrackingModule):
            loss = pl_module.epoch_losses().get("loss", math.nan)
            self.progress(self.stage, trainer.current_epoch + 1, self.epochs, f"loss {loss:.4f}")


class SegmenterModule(LossTrackingModule):
    """Trains a Mask3D-style segmenter on batches of `engine.data.collate` (voxel masks + point data)."""

    def __init__(self, preset: TrainPreset | dict, loss: LossConfig | dict, num_classes: int = 0) -> None:
        super().__init__()
        preset = preset if isinstance(preset, TrainPreset) else TrainPreset(**preset)
        loss = loss if isinstance(loss, LossConfig) else LossConfig(**loss)
        # plain types only: Lightning's checkpoints then load with weights_only
        self.save_hyperparameters(
            {"preset": preset.model_dump(mode="json"), "loss": loss.model_dump(mode="json"),
             "num_classes": num_classes}
        )
        self.preset, self.loss_config, self.num_classes = preset, loss, num_classes
        torch.manual_seed(preset.seed)
        self.segmenter = segmenter_from_preset(preset, num_classes)
        self.criterion = SetCriterion(loss, num_classes=num_classes)

    # -------------------------------------------------------------------------------- training

    def forward(self, batch: dict[str, Any]) -> SegmenterOutput:
        """Returns the segmenter's outputs for a collated batch."""
        return self.segmenter(batch["batch"])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Returns the eq. 7 loss of one batch (and logs every term)."""
        # the decoder's attention sampling draws from (seed, epoch, batch, rank), as the data's augmentation does from
        # (seed, epoch, scene): a resumed run draws what the uninterrupted one did
        self.segmenter.decoder.sample_seed = sample_seed(self.preset.seed, self.current_epoch, batch_idx,
                                                         self.global_rank)
        outputs = self(batch)
        terms = self.criterion(outputs, batch["targets"], batch["batch"])
        return self.record(terms, len(batch["names"]))

    def configure_optimizers(self) -> Any:
        """Returns AdamW and the preset's per-step schedule (see the module docstring)."""
        p = self.preset
        optimizer = torch.optim.AdamW(self.parameters(), lr=p.lr, weight_decay=p.weight_decay)
        if p.schedule == "constant":
            return optimizer
        # the trainer's max_steps when it sets one (it then runs epochs without bound), else epochs × batches
        total = max(int(self.trainer.estimated_stepping_batches), 2)
        if p.schedule == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=p.lr, total_steps=total, pct_start=p.onecycle_pct_start
            )
        else:
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -------------------------------------------------------------------------------- helpers

    def architecture(self) -> dict[str, Any]:
        """Returns the segmenter's architecture description (recorded in checkpoints)."""
        return self.segmenter.architecture()

    def load_segmenter_weights(self, path: str | Path) -> None:
        """Loads a segmenter checkpoint strictly into this module's segmenter (CheckpointError otherwise)."""
        load_model(path, "segmenter", into=self.segmenter)
