"""PointContrast's and CSC's learning rate is the original's function of samples seen, on any batch and device count
(issue 29 item 7).

The originals (facebookresearch/PointContrast pretrain/pointcontrast, facebookresearch/ContrastiveSceneContexts
pretrain/contrastive_scene_contexts): SGD at lr 0.05 (PointContrast's PointInfoNCE launcher scripts/ddp_launch.sh)
and 0.1 (CSC's scripts/pretrain_sparseconv.sh), torch's ExponentialLR(gamma 0.99) stepped every
trainer.lr_update_freq iterations (PointContrast 250, CSC 1000) of a global batch of 32 scenes (8 GPUs x 4).
After i iterations their rate is lr * 0.99 ** (i // lr_update_freq), written out below without the code under
test; their extra scheduler step at iteration 1 (a constant factor 0.99) is left out here as in the baselines.
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from stores import MemoryStore

from freepoint_bench.data.synthetic import SyntheticConfig, generate_room
from freepoint_bench.pretext.base import get_method
from freepoint_bench.pretext.training import OptimConfig, global_batch

ORIGINAL_BATCH = 32
# method: (lr_update_freq, iterations of the launch script the paper preset's epochs were sized from, its opt.lr)
ORIGINALS = {"pointcontrast": (250, 60_000, 0.05), "csc": (1000, 100_000, 0.1)}


def original_lr(samples: int, update_freq: int, lr: float) -> float:
    """The original's rate after `samples` scenes: lr * 0.99 ** (iterations // lr_update_freq) at batch 32."""
    return lr * 0.99 ** ((samples // ORIGINAL_BATCH) // update_freq)


def lr_after(optim: OptimConfig, steps: int, batch: int, total_steps: int) -> float:
    """Returns the rate the optimiser OptimConfig.build makes holds after `steps` optimiser steps of `batch`."""
    built = optim.build([torch.nn.Parameter(torch.zeros(1))], total_steps, batch)
    optimizer, scheduler = built["optimizer"], built["lr_scheduler"]["scheduler"]
    optimizer.step()  # no gradient: nothing moves; keeps torch from warning about the order of the two steps
    scheduler.last_epoch = steps - 1
    scheduler.step()
    return optimizer.param_groups[0]["lr"]


@pytest.mark.parametrize(("batch", "devices"), [(4, 1), (8, 4), (2, 3)])
@pytest.mark.parametrize("method", sorted(ORIGINALS))
def test_final_and_mid_run_rate_match_the_original(method, batch, devices):
    update_freq, iterations, lr = ORIGINALS[method]
    config = get_method(method).default_config("paper", batch_size=batch)
    assert config.optim.lr == lr and config.optim.gamma == 0.99
    g = batch * devices
    samples = iterations * ORIGINAL_BATCH
    steps = -(-samples // g)  # the first step at which the run has seen the original's budget
    for at in (steps // 3, steps // 2, steps):
        assert lr_after(config.optim, at, g, steps) == pytest.approx(original_lr(at * g, update_freq, lr), rel=1e-12)
    # the end of the originals' budgets: PointContrast 0.05 * 0.99 ** 240 = 0.0045, CSC 0.1 * 0.99 ** 100 = 0.0366
    expected = {"pointcontrast": 0.05 * 0.99**240, "csc": 0.1 * 0.99**100}[method]
    assert lr_after(config.optim, steps, g, steps) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("method", sorted(ORIGINALS))
def test_counted_in_steps_the_rate_collapses_at_batch_4_on_one_device(method):
    # what the schedule did before reference_batch (issue 29): 8x the steps of the original for the same samples
    update_freq, iterations, lr = ORIGINALS[method]
    steps = iterations * ORIGINAL_BATCH // 4
    optim = get_method(method).default_config("paper").optim.model_copy(update={"reference_batch": None})
    counted_in_steps = lr_after(optim, steps, 4, steps) / lr
    assert counted_in_steps == pytest.approx(0.99 ** (8 * iterations // update_freq), rel=1e-12)
    assert counted_in_steps < {"pointcontrast": 1e-8, "csc": 4e-4}[method]


@pytest.mark.parametrize("method", sorted(ORIGINALS))
def test_at_the_originals_global_batch_the_schedule_is_unchanged(method):
    # 4 scenes x 8 devices (the originals' split) or 8 x 4: every step's rate is the step-counted one
    optim = get_method(method).default_config("paper").optim
    update_freq, _, lr = ORIGINALS[method]
    for step in [*range(0, 3 * update_freq + 2, 7), update_freq - 1, update_freq, 2 * update_freq, 10**5]:
        assert optim.lr_factor(step, 32, 10**6) == 0.99 ** (step // update_freq)
        assert lr_after(optim, max(step, 1), 32, 10**6) == pytest.approx(lr * 0.99 ** (max(step, 1) // update_freq))


def test_global_batch_counts_devices_nodes_and_accumulation():
    def trainer(**kw):
        return pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                          enable_model_summary=False, **kw)

    assert global_batch(trainer(devices=1), 4) == 4
    assert global_batch(trainer(devices=4, strategy="ddp"), 8) == 32
    assert global_batch(trainer(devices=2, num_nodes=2, strategy="ddp", accumulate_grad_batches=2), 4) == 32


def test_reference_batch_is_recorded_only_when_set():
    # configs without it (DepthContrast, supervised) keep their records, run folders and checkpoint ids
    assert "reference_batch" not in OptimConfig().model_dump()
    assert "reference_batch" not in get_method("depthcontrast").default_config("paper").model_dump()["optim"]
    assert OptimConfig(reference_batch=32).model_dump()["reference_batch"] == 32
    for optim in (OptimConfig(), OptimConfig(reference_batch=32)):
        assert OptimConfig(**optim.model_dump(mode="json")) == optim
    config = get_method("csc").default_config("cpu-small", **{"optim.reference_batch": 64})
    assert config.optim.reference_batch == 64 and config.optim.decay_every == 1000
    # cosine is a function of the run's fraction: the batch does not enter
    cosine = OptimConfig(schedule="cosine", final_lr=0.001, reference_batch=32)
    assert cosine.lr_factor(50, 4, 100) == cosine.lr_factor(50, 32, 100) == pytest.approx(0.5 + 0.5 * 0.01)


class LastRate(Callback):
    def __init__(self):
        self.rates: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_a_run_decays_by_the_scenes_it_has_seen(tmp_path):
    # 2 rooms, batch 2, 4 epochs: 4 steps of 2 scenes; a halving every step of 4 scenes halves every 2 steps (counted
    # in steps: every step; with the batch left out of the count: once, at step 4)
    store = MemoryStore([generate_room(s, SyntheticConfig(num_points=3000), name=f"synth_{s:04d}") for s in (0, 1)])
    method = get_method("pointcontrast")
    config = method.default_config("cpu-small", epochs=4, batch_size=2, **{
        "optim.gamma": 0.5, "optim.decay_every": 1, "optim.reference_batch": 4})
    rates = LastRate()
    method.pretrain(store, config, tmp_path / "run", checkpoints_dir=tmp_path / "ckpt", callbacks=[rates])
    # the rate each step leaves for the next: after 2, 4, 6, 8 scenes
    assert rates.rates == pytest.approx([0.1, 0.05, 0.05, 0.025])
