"""SegmenterModule seeds the decoder's attention sampling (TrainPreset.attention_sample_sizes) per training step from
(seed, epoch, batch, rank), so a step's draw does not depend on what ran before it (a resumed run draws the same)."""

from __future__ import annotations

import numpy as np
import torch

from freepoint_bench.engine.data import Targets, collate, make_sample
from freepoint_bench.engine.module import SegmenterModule, sample_seed
from freepoint_bench.engine.presets import get_preset
from freepoint_bench.models.losses import LossConfig


def test_training_step_seeds_the_sampling_from_the_step_not_from_the_history(rooms):
    preset = get_preset("cpu-small", attention_sample_sizes=[2, 4, 8, 16])
    samples = [make_sample(rooms.load(name), preset, Targets(instance=rooms.load(name).instance),
                           rng=np.random.default_rng(seed), train=True) for seed, name in enumerate(rooms.names())]
    batch = collate(samples)
    torch.manual_seed(0)
    module = SegmenterModule(preset, LossConfig())
    assert module.segmenter.decoder.config.sample_sizes == (2, 4, 8, 16)
    module.record = lambda terms, size: terms["loss"]  # the loss alone: logging needs a Trainer
    module.train()
    with torch.no_grad():  # weights fixed; the BatchNorm statistics move but train mode does not read them
        first = module.training_step(batch, 3)
        assert module.segmenter.decoder.sample_seed == sample_seed(preset.seed, 0, 3, 0)
        other = module.training_step(batch, 4)
        torch.manual_seed(123)  # the global RNG plays no part
        again = module.training_step(batch, 3)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
