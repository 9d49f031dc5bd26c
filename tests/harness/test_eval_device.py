"""A cell evaluates on the device it trained on, not where Lightning's teardown left the module (the CPU).

The trainer here reports the "meta" device as the one it trained on: a device a CPU-only machine has, and one
that no CPU tensor is on, so any evaluation that follows the module's parameters after fit shows up as "cpu".
"""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
import torch

from freepoint_bench.data.synthetic import SyntheticConfig, write_synthetic_s3dis
from freepoint_bench.errors import ConfigError
from freepoint_bench.harness import finetune
from freepoint_bench.harness.cells import Cell, run_cell
from freepoint_bench.harness.protocol import PROTOCOLS_DIR, load_protocol
from freepoint_bench.harness.run import RunOptions, cell_config, ensure_split, open_protocol_data

PROTOCOL = "synthetic-s3dis-50pct-scenes"
TRAINED_ON = torch.device("meta")


class Predicted(Exception):
    """Raised by the segmenter's first forward in evaluation: where it ran is all these tests need."""


@pytest.fixture(scope="module")
def s3dis_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("s3dis")
    write_synthetic_s3dis(root, 6, seed=1, config=SyntheticConfig(num_points=1500))
    return root


@pytest.fixture()
def opts(tmp_path, s3dis_root):
    protocols = tmp_path / "protocols"
    (protocols / "splits").mkdir(parents=True)
    shutil.copy(PROTOCOLS_DIR / f"{PROTOCOL}.toml", protocols)
    return RunOptions(results=tmp_path / "results", checkpoints=tmp_path / "ckpt", cache=tmp_path / "cache",
                      runs=tmp_path / "runs", protocols_dir=protocols, root=s3dis_root,
                      overrides={"epochs": 1, "num_queries": 8})


@pytest.fixture()
def seen(monkeypatch):
    """Replaces the trainer by one that trained on TRAINED_ON and whose teardown left the module on the CPU;
    returns where the first evaluation forward found its input and its weights."""
    where: dict[str, torch.device] = {}
    fits = []

    def make_trainer(preset, out_dir, max_epochs, **kwargs):
        return SimpleNamespace(strategy=SimpleNamespace(root_device=TRAINED_ON))

    def fit(trainer, module, datamodule, ckpt_path=None):
        fits.append(module)
        module.cpu()  # Lightning's Strategy.teardown: the module goes back to the CPU after fit

        def record(segmenter, args):
            where["input"] = args[0].feats.device
            where["weights"] = next(segmenter.parameters()).device
            raise Predicted

        module.segmenter.register_forward_pre_hook(record)

    monkeypatch.setattr(finetune, "make_trainer", make_trainer)
    monkeypatch.setattr(finetune, "fit", fit)
    return SimpleNamespace(where=where, fits=fits)


def _cell(opts):
    """Returns (a random-initialisation cell of PROTOCOL, store, names, its fine-tuning config)."""
    spec = load_protocol(PROTOCOL, opts.protocols_dir)
    store, names = open_protocol_data(spec, opts)
    ensure_split(spec, store, names, opts.protocols_dir, opts.splits_dir)
    return Cell(spec, "scratch", 0, (None,)), store, names, cell_config(spec, opts)


def test_the_evaluation_runs_on_the_trainers_device_not_where_teardown_left_the_module(opts, seen):
    cell, store, names, config = _cell(opts)
    with pytest.raises(Predicted):
        run_cell(cell, store, names, config, opts.results, protocols_dir=opts.protocols_dir, splits_dir=opts.splits_dir)
    assert len(seen.fits) == 1
    assert seen.where == {"input": TRAINED_ON, "weights": TRAINED_ON}


def test_an_explicit_eval_device_overrides_the_trainers(opts, seen):
    cell, store, names, config = _cell(opts)
    with pytest.raises(Predicted):
        run_cell(cell, store, names, config, opts.results, protocols_dir=opts.protocols_dir, splits_dir=opts.splits_dir,
                 eval_device="cpu")
    assert seen.where == {"input": torch.device("cpu"), "weights": torch.device("cpu")}


def test_an_eval_device_the_machine_lacks_is_refused_before_training(opts, seen, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cell, store, names, config = _cell(opts)
    with pytest.raises(ConfigError, match="^--eval-device cuda: CUDA is not available"):
        run_cell(cell, store, names, config, opts.results, protocols_dir=opts.protocols_dir, splits_dir=opts.splits_dir,
                 eval_device="cuda")
    assert not seen.fits


def test_run_and_finetune_take_eval_device_through_to_the_cell(monkeypatch, bench_cli):
    """--eval-device reaches run_cell from both commands; a GPU the machine lacks is refused before any work."""
    from freepoint_bench.harness import run as run_module

    seen = []

    def fake_run_task(task, opts, progress=None):
        seen.append(opts.eval_device)
        raise ConfigError("cell reached")  # what the options were is all this test needs

    monkeypatch.setattr(run_module, "run_task", fake_run_task)
    code, out, err = bench_cli("finetune", "--protocol", PROTOCOL, "--method", "scratch", "--eval-device", "cpu")
    assert "cell reached" in out + err
    code, out, err = bench_cli("run", "--methods", "scratch", "--protocols", PROTOCOL, "--eval-device", "cpu")
    assert "cell reached" in out + err
    assert seen == ["cpu", "cpu"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, out, err = bench_cli("finetune", "--protocol", PROTOCOL, "--method", "scratch", "--eval-device", "cuda")
    assert code == 2 and "--eval-device" in out + err and len(seen) == 2


def test_run_task_hands_the_eval_device_to_run_cell(monkeypatch, tmp_path):
    from freepoint_bench.harness import run as run_module

    captured = {}
    monkeypatch.setattr(run_module, "open_protocol_data", lambda spec, opts: (None, []))
    monkeypatch.setattr(run_module, "ensure_split", lambda *a: None)
    monkeypatch.setattr(run_module, "fold_checkpoints", lambda *a, **k: (None,))
    monkeypatch.setattr(run_module, "run_cell", lambda *a, **k: captured.update(k) or ("done", tmp_path))
    opts = RunOptions(results=tmp_path, eval_device="cuda:1")
    run_module.run_task(run_module.Task(PROTOCOL, "scratch", 0), opts)
    assert captured["eval_device"] == "cuda:1"
