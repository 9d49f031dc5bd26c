"""The supervised baseline's `paper` preset decays its rate as CSC's semantic segmentation does (issue 29 item 8).

CSC's ScanNet semantic segmentation (facebookresearch/ContrastiveSceneContexts downstream/semseg:
scripts/train_scannet.sh optimizer.scheduler=PolyLR, optimizer.max_iter=20000, data.batch_size=48, optimizer.lr=0.8;
config/default.yaml optimizer.poly_power 0.9) builds lib/solvers.py's PolyLR, a LambdaLR of

    lambda s: (1 - s / (max_iter + 1)) ** power

stepped once after every optimizer step (lib/ddp_trainer.py), so its iteration i (1-based, curr_iter) runs at
lr * (1 - (i - 1) / (max_iter + 1)) ** power and its last, iteration max_iter, at lr * (2 / (max_iter + 1)) ** power.
That formula is written out below without the code under test.
"""

from __future__ import annotations

import math

import pytest
import torch
from stores import MemoryStore
from test_lr_schedule import LastRate

from freepoint_bench.data.synthetic import SyntheticConfig, generate_room
from freepoint_bench.pretext.base import get_method
from freepoint_bench.pretext.training import OptimConfig

MAX_ITER, BATCH, LR, POWER = 20_000, 48, 0.8, 0.9  # train_scannet.sh / default.yaml


def csc_poly(s: int, max_iter: int = MAX_ITER, power: float = POWER) -> float:
    """PolyLR's factor after s scheduler steps (lib/solvers.py)."""
    return (1 - s / (max_iter + 1)) ** power


def csc_rate_at_iteration(i: int) -> float:
    """The rate CSC's iteration i (1-based) runs at: i - 1 scheduler steps taken."""
    return LR * csc_poly(i - 1)


def built_rate(optim: OptimConfig, steps: int, global_batch: int, total_steps: int) -> float:
    """Returns the rate OptimConfig.build's optimiser runs its step `steps` (0-based) at, stepping its scheduler."""
    built = optim.build([torch.nn.Parameter(torch.zeros(1))], total_steps, global_batch)
    optimizer, scheduler = built["optimizer"], built["lr_scheduler"]["scheduler"]
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
    return optimizer.param_groups[0]["lr"]


def test_poly_is_cscs_polylr_over_the_runs_steps():
    optim = OptimConfig(lr=LR, schedule="poly")
    for s in (0, 1, 2, 7, 4999, 10_000, 19_998, 19_999, 20_000):
        assert optim.lr_factor(s, 6, MAX_ITER) == pytest.approx(csc_poly(s), rel=1e-12, abs=0.0)
    assert optim.lr_factor(25_000, 6, MAX_ITER) == pytest.approx(csc_poly(MAX_ITER), rel=1e-12)  # held past the end
    # stepped once per optimiser step, as ddp_trainer.py steps PolyLR: a short run step by step
    for step in range(0, 13):
        assert built_rate(optim, step, 6, 12) == pytest.approx(LR * csc_poly(step, 12), rel=1e-12)
    # power 2 is lib/solvers.py's SquaredLR
    squared = OptimConfig(lr=LR, schedule="poly", power=2.0)
    for s in (0, 3, 11):
        assert squared.lr_factor(s, 6, 12) == pytest.approx((1 - s / 13) ** 2, rel=1e-12)


@pytest.mark.parametrize(("batch", "devices"), [(6, 1), (6, 8), (4, 1), (8, 4), (4, 3)])
def test_the_paper_preset_runs_cscs_rate_per_sample_and_ends_on_its_last(batch, devices):
    config = get_method("supervised").default_config("paper", batch_size=batch)
    assert (config.optim.schedule, config.optim.power, config.optim.reference_batch) == ("poly", 0.9, BATCH)
    g = batch * devices
    samples = config.budget.samples
    assert samples == MAX_ITER * BATCH
    steps = -(-samples // g)  # the run that sees the original's samples
    # at each of CSC's iterations i, after (i - 1) * 48 samples, the factor on lr is CSC's
    for i in (1, 3, 5_001, 10_001, 19_999):
        step = (i - 1) * BATCH // g
        assert config.optim.lr_factor(step, g, steps) == pytest.approx(csc_poly(i - 1), rel=1e-12, abs=0.0)
    # the run's last optimiser step runs at CSC's last iteration's factor, (2 / 20001) ** 0.9
    last = config.optim.lr_factor(steps - 1, g, steps)
    assert last == pytest.approx((2 / 20_001) ** 0.9, rel=1e-12)
    assert last == pytest.approx(csc_rate_at_iteration(MAX_ITER) / LR, rel=1e-12)
    if batch == 6:  # the preset's batch: lr 0.1 per 6 scans is CSC's 0.8 per 48, and so is its last rate
        assert config.optim.lr * BATCH / batch * last == pytest.approx(csc_rate_at_iteration(MAX_ITER), rel=1e-12)


def test_the_paper_preset_builds_it_and_cpu_small_keeps_cosine():
    paper = get_method("supervised").default_config("paper")
    # the optimiser's own rate on its last step at batch 6 on one device: 160,000 steps of 6 scans
    optim = paper.optim.model_copy(update={"lr": 1.0})
    built = optim.build([torch.nn.Parameter(torch.zeros(1))], 160_000, 6)
    optimizer, scheduler = built["optimizer"], built["lr_scheduler"]["scheduler"]
    assert built["lr_scheduler"]["interval"] == "step"
    optimizer.step()
    scheduler.last_epoch = 160_000 - 2
    scheduler.step()  # the scheduler after 159,999 steps: the rate of step 160,000 (1-based)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(csc_poly(MAX_ITER - 1), rel=1e-12)
    small = get_method("supervised").default_config("cpu-small")
    assert small.optim.schedule == "cosine" and "power" not in small.model_dump()["optim"]


def test_power_is_recorded_only_when_not_its_default():
    assert "power" not in OptimConfig().model_dump() and "power" not in OptimConfig(schedule="poly").model_dump()
    assert OptimConfig(schedule="poly", power=2.0).model_dump()["power"] == 2.0
    for optim in (OptimConfig(schedule="poly"), OptimConfig(schedule="poly", power=1.5, reference_batch=48)):
        assert OptimConfig(**optim.model_dump(mode="json")) == optim


def test_a_supervised_run_decays_by_polylr(tmp_path):
    # 2 rooms, batch 2, 4 epochs: 4 steps of 2 scans, counted in steps of 4 scans: max_iter 2, and after steps 1-4
    # the rate of 0, 1, 1, 2 reference steps taken
    store = MemoryStore([generate_room(s, SyntheticConfig(num_points=3000), name=f"synth_{s:04d}") for s in (0, 1)])
    method = get_method("supervised")
    config = method.default_config("cpu-small", epochs=4, batch_size=2, **{
        "optim.schedule": "poly", "optim.reference_batch": 4})
    rates = LastRate()
    method.pretrain(store, config, tmp_path / "run", checkpoints_dir=tmp_path / "ckpt", callbacks=[rates])
    expected = [0.1 * csc_poly(k, 2) for k in (0, 1, 1, 2)]
    assert rates.rates == pytest.approx(expected, rel=1e-9)
    assert math.isclose(expected[-1], 0.1 * (1 / 3) ** 0.9)
