"""Semantic-segmentation training and prediction: per-voxel class labels, cross-entropy, frozen backbones.

    labels = point_classes(scene.semantic, class_lookup(classes))     # (N,) class index per point, -1 ignored
    data = LabelledDataModule(LabelledDataset(store, names, preset, labeller), preset)
    module = SemanticModule(preset, num_classes=13, frozen_backbone=True)   # the linear probe
    pred = predict_semantic(module.segmenter, scene, preset, device)   # (N,) class index on every point

A labeller maps a scene to (N,) class indices (0..K-1, -1 = ignored): the supervised baseline's labels every point
of its classes, the harness's semantic tasks label what a protocol's unit keeps. Each voxel takes the most frequent
label of its labelled points; the loss is the mean cross-entropy over labelled voxels. A frozen backbone
(FrozenBackbone) has requires_grad False and stays in eval mode whatever Lightning sets, so neither its weights nor
its BatchNorm statistics move.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from freepoint_bench.data.scene import Scene
from freepoint_bench.data.transforms import voxel_majority
from freepoint_bench.engine.data import EpochSampler, batch_to_device, collate, make_sample
from freepoint_bench.engine.module import LossTrackingModule, SegmenterModule, segmenter_config
from freepoint_bench.engine.presets import TrainPreset
from freepoint_bench.models.backbone import Res16UNet
from freepoint_bench.models.semantic import SemanticSegmenter, make_head
from freepoint_bench.parallel import loader_workers

IGNORE = -1  # the Scene convention for unlabelled points; also the ignore index of the loss

Labeller = Callable[[Scene], np.ndarray]  # scene → (N,) int64 class index per point, -1 = ignored


# ---------------------------------------------------------------------------------------------- labels


def class_lookup(classes: Sequence[int]) -> np.ndarray:
    """Returns (max id + 2,) int64: lookup[semantic + 1] is the class index of a semantic id (-1 → -1, others -1)."""
    lookup = np.full(max(classes) + 2, IGNORE, dtype=np.int64)
    lookup[np.asarray(classes, dtype=np.int64) + 1] = np.arange(len(classes))
    return lookup


def point_classes(semantic: np.ndarray, lookup: np.ndarray) -> np.ndarray:
    """Returns (N,) int64 class indices of semantic ids (-1 and ids outside the classes → -1)."""
    semantic = np.asarray(semantic, dtype=np.int64)
    out = np.full(len(semantic), IGNORE, dtype=np.int64)
    inside = (semantic >= 0) & (semantic + 1 < len(lookup))
    out[inside] = lookup[semantic[inside] + 1]
    return out


def voxel_labels(labels: np.ndarray, inverse: np.ndarray, num_voxels: int) -> np.ndarray:
    """Returns (M,) int64 the most frequent label of each voxel's labelled points (ties: the smallest label),
    -1 for voxels holding no labelled point. labels: (N,) int64, -1 = ignore; inverse: (N,) voxel per point."""
    return voxel_majority(labels, inverse, num_voxels, count_unlabelled=False)


# ---------------------------------------------------------------------------------------------- data


class LabelledDataset(Dataset):
    """Voxelised samples of `names` with per-voxel class labels (keys of engine.data.make_sample + "labels" (M,)).

    labeller: scene → (N,) class index per point (-1 ignored). Indexing with an int uses epoch 0; with
    (epoch, index) keys from EpochSampler (seeds crops and augmentation)."""

    def __init__(self, store: Any, names: Sequence[str], preset: TrainPreset, labeller: Labeller,
                 train: bool = True) -> None:
        self.store, self.names, self.preset, self.labeller, self.train = store, list(names), preset, labeller, train

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = (0, key) if isinstance(key, int | np.integer) else key
        scene = self.store.load(self.names[index])
        labels = self.labeller(scene)
        rng = np.random.default_rng([self.preset.seed, int(epoch), int(index)])
        sample = make_sample(scene, self.preset, None, rng=rng, train=self.train)
        sample["labels"] = voxel_labels(labels[sample["point_index"]], sample["inverse"], len(sample["coords"]))
        return sample


def collate_semantic(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Returns engine.data.collate's batch plus "labels": (M,) int64 class per voxel of the whole batch."""
    batch = collate(samples)
    batch["labels"] = torch.cat([torch.from_numpy(s["labels"]) for s in samples])
    return batch


class LabelledDataModule(pl.LightningDataModule):
    """The shuffled, epoch-seeded training loader of a LabelledDataset."""

    def __init__(self, train_set: LabelledDataset, preset: TrainPreset) -> None:
        super().__init__()
        self.train_set, self.preset = train_set, preset

    def transfer_batch_to_device(self, batch: dict[str, Any], device: torch.device,
                                 dataloader_idx: int) -> dict[str, Any]:
        """Returns the batch with its SparseBatch and labels on `device`."""
        out = batch_to_device(batch, device)
        out["labels"] = batch["labels"].to(device)
        return out

    def train_dataloader(self) -> DataLoader:
        """Returns the training loader (EpochSampler: a resumed run sees the same crops)."""
        workers = loader_workers(self.preset.num_workers)
        return DataLoader(self.train_set, batch_size=self.preset.batch_size,
                          sampler=EpochSampler(len(self.train_set), seed=self.preset.seed, shuffle=True),
                          collate_fn=collate_semantic, num_workers=workers, persistent_workers=workers > 0)


# ---------------------------------------------------------------------------------------------- training


def semantic_terms(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Returns {"loss": mean cross-entropy over the labelled voxels (labels >= 0), "accuracy": their accuracy};
    a batch without labelled voxels gives loss 0 with a graph (no signal, but every rank must step)."""
    labelled = labels >= 0
    if not bool(labelled.any()):
        return {"loss": logits.sum() * 0.0, "accuracy": torch.zeros((), device=logits.device)}
    loss = F.cross_entropy(logits, labels, ignore_index=IGNORE)
    accuracy = (logits.detach().argmax(dim=1) == labels)[labelled].float().mean()
    return {"loss": loss, "accuracy": accuracy}


def freeze(module: nn.Module) -> None:
    """Stops training `module`: requires_grad False on its parameters, eval mode (see FrozenBackbone)."""
    module.requires_grad_(False)
    module.eval()


class FrozenBackbone:
    """Mixin for a LightningModule whose `segmenter.backbone` may be frozen (`frozen_backbone`): the backbone's
    parameters get no gradient and it stays in eval mode when Lightning switches the module to train mode, so its
    BatchNorm running statistics do not move either."""

    frozen_backbone: bool = False
    segmenter: Any

    def freeze_backbone(self) -> None:
        """Freezes the backbone (call after building it; loading weights into it later keeps it frozen)."""
        self.frozen_backbone = True
        freeze(self.segmenter.backbone)

    def train(self, mode: bool = True) -> Any:
        super().train(mode)  # type: ignore[misc]
        if self.frozen_backbone:
            self.segmenter.backbone.eval()
        return self


class FrozenSegmenterModule(FrozenBackbone, SegmenterModule):
    """SegmenterModule with the backbone frozen: only the instance decoder trains (task insseg-frozen)."""

    def __init__(self, preset: TrainPreset | dict, loss: Any, num_classes: int = 0) -> None:
        super().__init__(preset, loss, num_classes=num_classes)
        self.freeze_backbone()


class SemanticModule(FrozenBackbone, LossTrackingModule):
    """Trains a SemanticSegmenter (the preset's backbone + a linear per-voxel classifier) with cross-entropy over
    the labelled voxels of LabelledDataModule batches; AdamW and the preset's schedule as SegmenterModule.
    frozen_backbone: only the classifier trains (the linear probe)."""

    def __init__(self, preset: TrainPreset | dict, num_classes: int, frozen_backbone: bool = False) -> None:
        super().__init__()
        preset = preset if isinstance(preset, TrainPreset) else TrainPreset(**preset)
        # plain types only: Lightning's checkpoints then load with weights_only
        self.save_hyperparameters({"preset": preset.model_dump(mode="json"), "num_classes": int(num_classes),
                                   "frozen_backbone": bool(frozen_backbone)})
        self.preset, self.num_classes = preset, int(num_classes)
        torch.manual_seed(preset.seed)  # the backbone starts as the instance segmenter's would
        backbone = Res16UNet(segmenter_config(preset).backbone)
        self.segmenter = SemanticSegmenter(backbone, make_head(backbone.out_channels, num_classes), num_classes)
        if frozen_backbone:
            self.freeze_backbone()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Returns the mean cross-entropy over the batch's labelled voxels (and logs it with the accuracy)."""
        voxels = batch["batch"]
        terms = semantic_terms(self.segmenter(voxels.coords, voxels.feats), batch["labels"])
        return self.record(terms, len(batch["names"]))

    # the same optimiser and per-step schedule as instance fine-tuning (it reads self.preset and self.parameters();
    # AdamW skips a frozen backbone's parameters, which never get a gradient)
    configure_optimizers = SegmenterModule.configure_optimizers


# ---------------------------------------------------------------------------------------------- prediction


@torch.no_grad()
def predict_semantic(model: nn.Module, scene: Scene, preset: TrainPreset, device: str | torch.device) -> np.ndarray:
    """Returns (N,) int64 the predicted class index of every point of `scene` (whole scene, no crop or
    augmentation; each point takes its voxel's prediction). `model(coords, feats)` → (M, K) logits."""
    sample = make_sample(scene, preset, None, train=False)
    voxels = collate([sample])["batch"].to(device)
    return model(voxels.coords, voxels.feats).argmax(dim=1).cpu().numpy()[sample["inverse"]]
