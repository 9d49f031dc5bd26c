"""Trainer factory and module: Lightning strategies chosen from devices, schedules, one real fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_lightning.callbacks import ModelCheckpoint, RichProgressBar
from pytorch_lightning.strategies import DDPStrategy, SingleDeviceStrategy

from freepoint_bench.engine.data import GroundTruthTargets, SceneDataModule
from freepoint_bench.engine.module import SegmenterModule
from freepoint_bench.engine.presets import get_preset
from freepoint_bench.engine.trainer import check_devices, fit, last_checkpoint, make_trainer
from freepoint_bench.errors import ConfigError
from freepoint_bench.models.losses import LossConfig

PRESET = get_preset("cpu-small", voxel_size_m=0.15, num_queries=6, schedule="onecycle",
                    **{"augment.rotate_z": False})


def test_cpu_single_device_has_checkpointing_and_optional_progress_bar(tmp_path):
    trainer = make_trainer(PRESET, tmp_path, max_epochs=2, enable_progress_bar=True)
    assert isinstance(trainer.strategy, SingleDeviceStrategy)
    assert trainer.precision == "32-true"
    ckpt = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]
    assert len(ckpt) == 1 and ckpt[0].save_last
    assert any(isinstance(c, RichProgressBar) for c in trainer.callbacks)
    quiet = make_trainer(PRESET, tmp_path, max_epochs=1, enable_progress_bar=False)
    assert not any(isinstance(c, RichProgressBar) for c in quiet.callbacks)


def test_several_devices_use_lightnings_ddp(tmp_path):
    trainer = make_trainer(PRESET, tmp_path, max_epochs=1, devices=2)
    assert isinstance(trainer.strategy, DDPStrategy)
    assert trainer.num_devices == 2


def test_gpu_preset_without_cuda_falls_back_to_cpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA present: no fallback to test")
    trainer = make_trainer(get_preset("paper"), tmp_path, max_epochs=1)
    assert trainer.precision == "32-true"


def test_bad_arguments_are_config_errors(tmp_path):
    with pytest.raises(ConfigError):
        make_trainer(PRESET, tmp_path, max_epochs=0)
    with pytest.raises(ConfigError):
        make_trainer(PRESET, tmp_path, max_epochs=1, nodes=0)
    for devices in (0, -2, "0", "abc", "1.5", ""):
        with pytest.raises(ConfigError, match="devices"):
            make_trainer(PRESET, tmp_path, max_epochs=1, devices=devices)


@pytest.mark.parametrize(("devices", "expected"), [(1, 1), ("1", 1), (" 3 ", 3), (-1, -1), ("auto", "auto"),
                                                   ("0,1", "0,1")])
def test_devices_are_parsed_as_lightning_takes_them(devices, expected):
    assert check_devices(devices) == expected


def test_all_devices_on_a_cpu_machine_is_one_process(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    for devices in (-1, "auto", "0,1"):
        trainer = make_trainer(PRESET, tmp_path, max_epochs=1, devices=devices)
        assert trainer.num_devices == 1 and not isinstance(trainer.strategy, DDPStrategy)


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "constant"])
def test_one_fit_runs_each_schedule_and_writes_last_ckpt(tmp_path, rooms, schedule):
    preset = PRESET.with_(schedule=schedule)
    module = SegmenterModule(preset, LossConfig())
    dm = SceneDataModule(rooms, rooms.names(), GroundTruthTargets(), preset)
    trainer = make_trainer(preset, tmp_path, max_epochs=2, enable_progress_bar=False)
    fit(trainer, module, dm)
    assert last_checkpoint(tmp_path) is not None
    assert len(module.loss_history) == 2 and np.isfinite([h["loss"] for h in module.loss_history]).all()
    lrs = [g["lr"] for g in trainer.optimizers[0].param_groups]
    if schedule == "constant":
        assert lrs == [preset.lr]
    else:
        assert lrs[0] < preset.lr  # annealed by the end
    saved = torch.load(last_checkpoint(tmp_path), weights_only=True)
    assert len(saved["freepoint_bench_loss_history"]) == 2
