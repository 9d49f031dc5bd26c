"""The `scratch` baseline: a randomly initialised backbone, written as a checkpoint like every pretext method's.

    method = get_method("scratch")
    config = method.default_config("cpu-small", seed=3)
    result = method.pretrain(store, config, Path("runs/scratch"))
    result.backbone          # checkpoints/scratch-<dataset>-<hash>-backbone.ckpt, listed in checkpoints/index.json

The weights are those FreePoint's segmenter starts from with the same preset and seed (torch.manual_seed(seed),
then the backbone is the first module built), so "fine-tune from scratch" in the harness is the same model a
pretext method starts with, untrained. The checkpoint records that it saw no data (data.scenes = []).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from freepoint_bench.atomic import write_json
from freepoint_bench.engine.presets import TrainPreset, get_preset
from freepoint_bench.pretext.base import PretrainResult, ProgressFn
from freepoint_bench.pretext.runs import checkpoint_metadata, publish
from freepoint_bench.pretext.training import build_backbone

log = logging.getLogger(__name__)


class ScratchConfig(BaseModel):
    """A scratch run: only the preset (backbone size, input channels, seed) matters."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    train: TrainPreset = get_preset("cpu-small")  # backbone and input of the fine-tuning model; seed seeds the weights


class ScratchPretext:
    """The `scratch` pretext method: no training, the seeded random initialisation as the checkpoint."""

    name = "scratch"

    def default_config(self, preset: str = "cpu-small", **overrides: Any) -> ScratchConfig:
        """Returns a ScratchConfig on training preset `preset`; overrides are preset fields (`train.` optional)."""
        fields = {key.removeprefix("train."): value for key, value in overrides.items()}
        return ScratchConfig(train=get_preset(preset, **fields))

    def pretrain(
        self,
        store: Any,
        config: ScratchConfig,
        out_dir: str | Path,
        *,
        names: list[str] | None = None,
        progress: ProgressFn | None = None,
        checkpoints_dir: str | Path = "checkpoints",
        **kwargs: Any,
    ) -> PretrainResult:
        """Returns the random backbone's checkpoint (data.scenes = []: it saw none of `names`). resume, overwrite,
        devices and the other training arguments are accepted and unused: the weights are a pure function of the
        config, so a rerun writes the same file."""
        backbone = build_backbone(config.train)
        meta = checkpoint_metadata(self.name, store, [], config, config.train, backbone)
        result = publish({**meta, "metrics": {"init": {"epochs": 0, "scenes": 0}}}, {"backbone": backbone},
                         Path(checkpoints_dir))
        write_json(Path(out_dir) / "run.json", {"method": self.name, "config": config.model_dump(mode="json"),
                                                "scenes": [], "checkpoint": str(result.backbone)})
        if progress is not None:
            progress("init", 1, 1, f"random weights, seed {config.train.seed}")
        return result
