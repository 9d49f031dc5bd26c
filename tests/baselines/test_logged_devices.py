"""Every value a training module logs with sync_dist is on the module's device (NCCL reduces no CPU tensor).

One training step of each pretraining module and of the segmenter, outside Lightning, with the module's device
set to "meta": a device no CPU-computed value is on, so a value made or left on the CPU (PointContrast's pair
count was) is told apart from one moved to where the rank's collectives run.
"""

from __future__ import annotations

import numbers
from types import SimpleNamespace

import pytest
import torch
from stores import MemoryStore

from baselines.supervised import resolve_classes
from freepoint_bench.data.synthetic import SyntheticConfig, generate_room
from freepoint_bench.engine.data import GroundTruthTargets, SceneDataModule
from freepoint_bench.engine.module import SegmenterModule
from freepoint_bench.engine.presets import get_preset
from freepoint_bench.models.losses import LossConfig
from freepoint_bench.pretext.base import get_method

RANK_DEVICE = torch.device("meta")
SMALL = {"train.batch_size": 1, "train.voxel_size_m": 0.1}  # one step in a second or two


@pytest.fixture(scope="module")
def store():
    config = SyntheticConfig(num_points=2000)
    return MemoryStore([generate_room(seed, config, name=f"synth_{seed:04d}") for seed in (0, 1)])


def _pretext(name: str, store: MemoryStore):
    """Returns (module, datamodule) of pretext method `name` on the store's scenes, cpu-small preset."""
    method, names = get_method(name), store.names()
    config = method.default_config("cpu-small", epochs=1, **SMALL)
    if name == "supervised":
        config = config.model_copy(update={"classes": resolve_classes(config, "synthetic", store, names)})
    return method.build_module(config), method.build_data(store, names, config)


def _segmenter(num_classes: int, store: MemoryStore):
    """Returns (SegmenterModule, datamodule): FreePoint's pretraining (class-agnostic) or a fine-tuning one."""
    preset = get_preset("cpu-small", num_queries=8, batch_size=1, voxel_size_m=0.1)
    targets = GroundTruthTargets(class_agnostic=num_classes == 0)
    return SegmenterModule(preset, LossConfig(), num_classes=num_classes), SceneDataModule(store, store.names(),
                                                                                           targets, preset)


BUILDERS = {
    "pointcontrast": lambda store: _pretext("pointcontrast", store),
    "csc": lambda store: _pretext("csc", store),
    "depthcontrast": lambda store: _pretext("depthcontrast", store),
    "supervised": lambda store: _pretext("supervised", store),
    "freepoint-segmenter": lambda store: _segmenter(0, store),
    "finetune-segmenter": lambda store: _segmenter(13, store),
}


def test_every_trained_pretext_method_is_covered():
    trained = {"pointcontrast", "csc", "depthcontrast", "supervised", "freepoint"}  # scratch trains nothing
    assert {name.split("-")[0] for name in BUILDERS} == trained | {"finetune"}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_values_logged_with_sync_dist_are_on_the_modules_device(name, store):
    module, data = BUILDERS[name](store)
    batch = next(iter(data.train_dataloader()))
    logged = []

    def log(key, value, *args, sync_dist=False, **kwargs):
        logged.append((key, value, sync_dist))

    module.log = log
    # one process of a run: what training_step reads of its trainer, no Lightning loop around it
    module._trainer = SimpleNamespace(world_size=1, global_rank=0, global_step=0, current_epoch=0)
    module._device = RANK_DEVICE  # where Lightning would have moved the module: the rank's GPU
    module.training_step(batch, 0)
    synced = [(key, value) for key, value, sync in logged if sync]
    assert synced and any(key == "train/loss" for key, _ in synced)
    for key, value in synced:
        # Lightning makes a plain number a tensor on the module's device itself; a tensor it keeps where it is
        assert isinstance(value, numbers.Number) or value.device == RANK_DEVICE, (key, value.device)
