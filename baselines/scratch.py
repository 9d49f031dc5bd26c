"""The `scratch` baseline: a randomly initialised backbone, written as a checkpoint like every pretext method's.

    method = get_method("scratch")
    config = method.default_config("cpu-small", seed=3)
    result = method.pretrain(store, config, Path("runs/scratch"))
    result.backbone          # checkpoints/scratch-none-<hash>-backbone.ckpt, listed in checkpoints/index.json

The weights are those FreePoint's segmenter starts from with the same preset and seed (torch.manual_seed(seed),
then the backbone is the first module built), so "fine-tune from scratch" in the harness is the same model a
pretext method starts with, untrained. The checkpoint records that it saw no data (data.scenes = []).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict

from freepoint_bench.atomic import stable_hash, write_json
from freepoint_bench.engine.checkpoints import (
    code_version,
    data_description,
    environment,
    input_metadata,
    register_checkpoint,
    save_model_checkpoint,
)
from freepoint_bench.engine.module import segmenter_config
from freepoint_bench.engine.presets import TrainPreset, get_preset
from freepoint_bench.models.backbone import Res16UNet
from freepoint_bench.pretext.base import PretrainResult, ProgressFn

log = logging.getLogger(__name__)


class ScratchConfig(BaseModel):
    """A scratch run: only the preset (backbone size, input channels, seed) matters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    train: TrainPreset = get_preset("cpu-small")  # backbone and input of the fine-tuning model; seed seeds the weights


def random_backbone(preset: TrainPreset) -> Res16UNet:
    """Returns the backbone FreePoint's segmenter starts from for `preset` (seeded by preset.seed)."""
    torch.manual_seed(preset.seed)
    return Res16UNet(segmenter_config(preset).backbone)


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
        resume: bool = False,
        progress: ProgressFn | None = None,
        checkpoints_dir: str | Path = "checkpoints",
        **kwargs: Any,
    ) -> PretrainResult:
        """Returns the random backbone's checkpoint. The scenes (`names`), resume, overwrite, devices and the
        other training arguments are accepted and unused: the weights are a pure function of the config, so a
        rerun writes the same file."""
        out_dir, checkpoints_dir = Path(out_dir), Path(checkpoints_dir)
        backbone = random_backbone(config.train)
        meta = {
            "method": self.name,
            "config": config.model_dump(mode="json"),
            # it saw no data: nothing for the leakage guard to find, and no dataset in its id
            "data": {**data_description(store, []), "dataset": "none"},
            "architecture": backbone.architecture(),
            "backend": config.train.backend,
            "input": input_metadata(config.train),
            "metrics": {"init": {"epochs": 0, "scenes": 0}},  # the CLI prints these
            "code_version": code_version(),
            "environment": environment(),
        }
        run_id = f"{self.name}-none-{stable_hash(meta['config'], length=10)}"
        meta["id"] = run_id
        path = checkpoints_dir / f"{run_id}-backbone.ckpt"
        save_model_checkpoint(path, backbone, meta)
        register_checkpoint(checkpoints_dir / "index.json", run_id, meta, {"backbone": path})
        write_json(out_dir / "run.json", {"method": self.name, "config": meta["config"], "scenes": [],
                                          "checkpoint": str(path)})
        if progress is not None:
            progress("init", 1, 1, f"random weights, seed {config.train.seed}")
        log.info("wrote %s", path)
        return PretrainResult(method=self.name, backbone=path, metadata=meta)
