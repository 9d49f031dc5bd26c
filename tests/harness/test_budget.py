"""Fine-tuning budgets in optimiser steps (issue 29, item 1): the paper preset trains 90k iterations (supplement A.2),
max_steps ends the run and OneCycle's schedule there whatever the epochs, a resume keeps the step count, and configs
without max_steps keep the records and recipe hashes they had."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from stores import MemoryStore

from freepoint_bench.atomic import stable_hash
from freepoint_bench.config import parse_overrides
from freepoint_bench.data.synthetic import SyntheticConfig, generate_room
from freepoint_bench.harness import finetune as finetune_module
from freepoint_bench.harness.finetune import ProtocolTargets, finetune_config, train_fold
from freepoint_bench.harness.protocol import EvalRules
from freepoint_bench.results import recipe_of

RULES = EvalRules(classes="s3dis")
TINY = {"epochs": 1, "num_queries": 8, "batch_size": 1, "max_points": None, "schedule": "onecycle", "lr": 1e-3}
# recipe hashes of the fine-tuning presets before max_steps existed (results.recipe_of of the recorded config);
# the paper preset's moves on purpose (1d1b76fb566f40be before, f4820498c3225e6b now): its budget is now 90k steps
CPU_SMALL_RECIPE_HASH = "a24276b4612eb392"


def onecycle_lr(step: int, total: int, max_lr: float, pct_start: float) -> float:
    """torch.optim.lr_scheduler.OneCycleLR's rate at optimiser step `step` (0-based) of `total`, two phases, cosine
    annealing, div_factor 25 and final_div_factor 1e4, written out from its documented formula."""
    initial, final = max_lr / 25, max_lr / 25 / 1e4
    warm_end = pct_start * total - 1

    def cos(start: float, end: float, pct: float) -> float:
        return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)

    if step <= warm_end:
        return cos(initial, max_lr, step / warm_end)
    return cos(max_lr, final, (step - warm_end) / (total - 1 - warm_end))


class Steps(pl.Callback):
    """Records the learning rate each optimiser step uses, and the global step after it."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.lrs: list[float] = []
        self.steps: list[int] = []
        self.stop_at = stop_at

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.lrs.append(optimizer.param_groups[0]["lr"])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append(trainer.global_step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.stop_at is not None and trainer.global_step == self.stop_at:
            raise RuntimeError(f"killed at step {trainer.global_step}")


@pytest.fixture(scope="module")
def store():
    return MemoryStore([generate_room(i, SyntheticConfig(num_points=800), name=f"synth_{i:04d}") for i in range(3)])


def _recording(monkeypatch, callback: Steps) -> None:
    """Adds `callback` to the trainer train_fold makes."""
    make = finetune_module.make_trainer

    def with_callback(*args, callbacks=(), **kwargs):
        return make(*args, callbacks=[*callbacks, callback], **kwargs)

    monkeypatch.setattr(finetune_module, "make_trainer", with_callback)


def _train(store, config, work):
    return train_fold(store, store.names(), ProtocolTargets(RULES), config, num_classes=14, init_backbone=None,
                      seed=0, work_dir=work)


def test_the_paper_preset_trains_90k_steps_and_the_stand_ins_count_epochs():
    paper, small = finetune_config("paper"), finetune_config("cpu-small")
    assert (paper.max_steps, paper.train.batch_size) == (90_000, 4)  # supplement A.2 at Mask3D's S3DIS batch
    assert small.max_steps is None and small.epochs == 20
    # 20 rooms (10% scenes) at batch 4: 90k steps whatever the rooms; epochs 20 × 5 steps for the stand-in
    assert (paper.steps(20), small.steps(20)) == (90_000, 20 * math.ceil(20 / small.train.batch_size))
    assert paper.epochs_for(20) == 90_000 // 5 and paper.epochs_for(204) == math.ceil(90_000 / 51)
    assert paper.steps(0) == small.steps(0) == 0
    assert finetune_config("paper", **parse_overrides(["max_steps=none"])).max_steps is None
    # naming epochs alone budgets in epochs (`--set epochs=1` on a paper protocol trains 1 epoch, not 90k steps)
    assert finetune_config("paper", epochs=1).max_steps is None and finetune_config("paper", epochs=1).steps(20) == 5
    assert finetune_config("paper", epochs=1, max_steps=10).steps(20) == 10
    assert finetune_config("cpu-small", max_steps=7).steps(1000) == 7


def test_max_steps_is_left_out_of_records_where_unset():
    small = finetune_config("cpu-small")
    assert "max_steps" not in small.model_dump(mode="json")
    assert stable_hash(recipe_of(small.model_dump(mode="json"))) == CPU_SMALL_RECIPE_HASH
    paper = finetune_config("paper").model_dump(mode="json")
    assert paper["max_steps"] == 90_000 and recipe_of(paper)["max_steps"] == 90_000


def test_max_steps_ends_the_run_and_the_onecycle_schedule_whatever_the_epochs(store, tmp_path, monkeypatch):
    # 3 rooms at batch 1 are 3 steps an epoch: epochs=1 alone would stop after 3, max_steps=5 runs into a second
    config = finetune_config("cpu-small", **TINY, max_steps=5)
    seen = Steps()
    _recording(monkeypatch, seen)
    module, _ = _train(store, config, tmp_path / "work")
    assert seen.steps == [1, 2, 3, 4, 5] and module.trainer.global_step == 5
    pct = config.train.onecycle_pct_start
    assert seen.lrs == pytest.approx([onecycle_lr(i, 5, 1e-3, pct) for i in range(5)], rel=1e-9)
    assert seen.lrs[-1] == pytest.approx(1e-3 / 25 / 1e4, rel=1e-9)  # the last step runs at OneCycle's final rate


def test_a_resumed_run_keeps_its_step_count_and_schedule(store, tmp_path, monkeypatch):
    config = finetune_config("cpu-small", **TINY, max_steps=5)
    monkeypatch.setattr(finetune_module, "CHECKPOINT_STEPS", 3)  # a resume point at each epoch's end (3 steps)
    killed = Steps(stop_at=4)  # dies inside the second epoch, after the checkpoint of step 3
    _recording(monkeypatch, killed)
    with pytest.raises(RuntimeError, match="killed at step 4"):
        _train(store, config, tmp_path / "work")
    assert killed.steps == [1, 2, 3, 4]
    monkeypatch.undo()
    monkeypatch.setattr(finetune_module, "CHECKPOINT_STEPS", 3)
    resumed = Steps()
    _recording(monkeypatch, resumed)
    module, _ = _train(store, config, tmp_path / "work")
    # from the checkpoint at step 3: steps 4 and 5 again, then the run ends at 5
    assert resumed.steps == [4, 5] and module.trainer.global_step == 5
    pct = config.train.onecycle_pct_start
    assert resumed.lrs == pytest.approx([onecycle_lr(i, 5, 1e-3, pct) for i in (3, 4)], rel=1e-9)


def test_a_max_steps_run_checkpoints_about_every_checkpoint_steps_at_epoch_ends(store, tmp_path, monkeypatch):
    config = finetune_config("cpu-small", **TINY, max_steps=7)
    monkeypatch.setattr(finetune_module, "CHECKPOINT_STEPS", 6)  # epochs of 3 steps: a resume point every 2 epochs
    _train(store, config, tmp_path / "work")
    # epoch 0 (steps 1-3): none; epoch 1 (4-6): one; epoch 2 (step 7, where max_steps ends it): none
    files = sorted(p.name for p in (tmp_path / "work" / "lightning").glob("*.ckpt"))
    assert files == ["epoch=001.ckpt", "last.ckpt"]
    assert torch.load(tmp_path / "work" / "lightning" / "last.ckpt", weights_only=True)["global_step"] == 6


def test_a_cell_on_a_step_budget_records_the_passes_it_made(bench_cli, tmp_path):
    """fold.json / result.json record the epochs a max_steps budget made (they recorded the unread `epochs` field: a
    90k-step paper cell claimed 600 epochs, and its scene-epochs throughput with it)."""
    from freepoint_bench.data.synthetic import write_synthetic_s3dis
    from freepoint_bench.results import read_result

    root = tmp_path / "s3dis"
    write_synthetic_s3dis(root, 12, seed=1, config=SyntheticConfig(num_points=1500))
    protocol = "synthetic-s3dis-50pct-scenes"  # 5 training rooms: at batch 2, 3 steps per epoch
    code, _, err = bench_cli("run", "--methods", "scratch", "--protocols", protocol, "--seeds", "0", "--root", root,
                             "--results", tmp_path / "results", "--checkpoints", tmp_path / "ckpt", "--runs",
                             tmp_path / "runs", "--cache", tmp_path / "cache", "--set", "max_steps=4", "--set",
                             "batch_size=2", "--set", "num_queries=8", "--set", "max_points=null")
    assert code == 0, err
    record = read_result(tmp_path / "results" / protocol / "scratch" / "seed-0" / "result.json")
    assert record.config["max_steps"] == 4
    assert record.folds[0]["epochs"] == 2  # ceil(4 steps / 3 per epoch), not the unread epochs=40
    assert record.throughput["train_scene_epochs"] == 5 * 2
