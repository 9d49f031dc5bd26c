"""Instance predictions of a trained segmenter checkpoint, written in the ScanNet benchmark format.

    written = predict("checkpoints/freepoint-...-segmenter.ckpt", store, names, Path("out/preds"))

A checkpoint records how its input was made (`metadata["input"]`: voxel size, xyz features), so this
needs nothing but the checkpoint and the scenes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from freepoint_bench.data.scene import Scene
from freepoint_bench.engine.checkpoints import input_preset, load_model
from freepoint_bench.engine.data import collate, make_sample
from freepoint_bench.engine.presets import TrainPreset
from freepoint_bench.errors import ConfigError
from freepoint_bench.evaluation import Predictions, write_predictions
from freepoint_bench.geometry.superpoints import superpoints
from freepoint_bench.models.inference import InferenceConfig, predict_instances


@torch.no_grad()
def predict_scene(model: torch.nn.Module, scene: Scene, preset: TrainPreset, inference: InferenceConfig | None,
                  device: str | torch.device) -> Predictions:
    """Returns `model`'s instances on every point of `scene` (voxel masks mapped back), labels as class indices.

    The one inference loop body: `predict` (a checkpoint file → benchmark files) and the harness's evaluation
    both call it, so an inference setting (superpoints, thresholds) means the same in `predict` and `run`."""
    batch = collate([make_sample(scene, preset, None, train=False)])
    voxels = batch["batch"].to(device)
    segments = None
    if inference is not None and inference.superpoints is not None:
        segments = [superpoints(scene.xyz, inference.superpoints)]
    found = predict_instances(model(voxels), voxels, inference, segments)[0]
    return Predictions(masks=found.masks, labels=found.labels, scores=found.scores)


@torch.no_grad()
def predict(
    checkpoint: str | Path,
    store: Any,
    names: Sequence[str],
    out_pred_dir: str | Path,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int, str], None] | None = None,
    inference: InferenceConfig | None = None,
) -> list[Path]:
    """Returns the prediction files written for `names` (ScanNet benchmark format under out_pred_dir)."""
    checkpoint = Path(checkpoint)
    model, meta = load_model(checkpoint, "segmenter", device)
    if inference is not None and inference.mode == "mask3d" and model.decoder.config.num_classes == 0:
        raise ConfigError(f"{checkpoint}: a class-agnostic segmenter (no class head: FreePoint's pretraining makes "
                          "one) cannot use inference mode 'mask3d', which ranks (mask, class) pairs; use mode 'query'")
    preset = input_preset(meta, checkpoint)
    written = []
    for i, name in enumerate(names):
        scene = store.load(name)
        written.append(write_predictions(out_pred_dir, scene.name, predict_scene(model, scene, preset, inference,
                                                                                   device)))
        if progress is not None:
            progress(i + 1, len(names), name)
    return written
