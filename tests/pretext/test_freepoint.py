"""FreePoint's two-step pretext end to end on tiny rooms: loss falls, strict loading, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pytorch_lightning.callbacks import Callback
from stores import MemoryStore

from freepoint_bench.data.scene import Scene
from freepoint_bench.engine.checkpoints import load_model
from freepoint_bench.engine.features import backbone_features
from freepoint_bench.engine.module import segmenter_from_preset
from freepoint_bench.errors import CheckpointError, ConfigError
from freepoint_bench.models.checkpoint import load_checkpoint, load_into
from freepoint_bench.pretext.base import get_method

# a fast, nearly deterministic recipe: tiny model, coarse voxels, few queries, no augmentation
FAST = {
    "voxel_size_m": 0.15,
    "num_queries": 8,
    "batch_size": 2,
    "epochs1": 3,  # one step each; the first step of a fresh model may raise the loss (seen: 22.4 -> 23.1 -> 19.6)
    "epochs2": 1,
    "lr": 3e-3,
    "schedule": "constant",
    "augment.rotate_z": False,
    "augment.flip_xy": False,
    "augment.jitter_sigma_m": 0.0,
    "augment.color_jitter": 0.0,
    "augment.scale_min": 1.0,
    "augment.scale_max": 1.0,
}


def room(seed: int) -> Scene:
    """Returns a floor with three coloured boxes (no labels needed: the pretext makes its own)."""
    rng = np.random.default_rng(seed)
    xyz = [np.c_[rng.uniform(0, 4, (1500, 2)), np.zeros(1500)]]
    rgb = [np.full((1500, 3), 0.5)]
    for k in range(3):
        lo = np.array([0.3 + 1.2 * k, 0.5 + 0.7 * (k % 2), 0.0])
        xyz.append(lo + rng.uniform(0, 1, (600, 3)) * rng.uniform(0.4, 0.8, 3))
        rgb.append(np.tile(rng.uniform(0, 1, 3), (600, 1)))
    xyz, rgb = np.concatenate(xyz), np.concatenate(rgb)
    return Scene(name=f"room{seed}", xyz=xyz, rgb=rgb, meta={"dataset": "boxes"})


class CountEpochs(Callback):
    def __init__(self):
        self.epochs = 0

    def on_train_epoch_start(self, trainer, pl_module):
        self.epochs += 1


class Interrupt(Callback):
    """Raises at the start of epoch `at` (0-based) of the first fit it sees."""

    def __init__(self, at: int):
        self.at, self.fired = at, False

    def on_train_epoch_start(self, trainer, pl_module):
        if not self.fired and trainer.current_epoch == self.at:
            self.fired = True
            raise RuntimeError("simulated interruption")


@pytest.fixture(scope="module")
def store():
    return MemoryStore([room(0), room(1)], dataset="boxes")


@pytest.fixture(scope="module")
def method():
    return get_method("freepoint")


@pytest.fixture(scope="module")
def finished(tmp_path_factory, store, method):
    base = tmp_path_factory.mktemp("fp")
    config = method.default_config("cpu-small", **FAST)
    events = []
    result = method.pretrain(store, config, base / "run", checkpoints_dir=base / "ckpts",
                             progress=lambda *a: events.append(a))
    return base, config, result, events


def test_two_step_pretraining_writes_checkpoints_with_metadata(finished):
    base, config, result, events = finished
    assert result.backbone.is_file() and result.segmenter.is_file()
    meta = result.metadata
    assert meta["method"] == "freepoint"
    assert meta["data"]["dataset"] == "boxes" and meta["data"]["num_scenes"] == 2
    assert meta["code_version"]["version"]
    assert set(meta["metrics"]) == {"step1", "step2"}
    assert meta["metrics"]["step1"]["sigma"] == pytest.approx(0.9)
    assert meta["metrics"]["step2"]["sigma"] == pytest.approx(1.2)
    assert len(meta["metrics"]["step1"]["loss_history"]) == FAST["epochs1"]
    assert len(meta["metrics"]["step2"]["loss_history"]) == 1
    index = json.loads((base / "ckpts" / "index.json").read_text())
    entry = index["checkpoints"][meta["id"]]
    assert (base / "ckpts" / entry["files"]["backbone"]).resolve() == result.backbone.resolve()
    stages = {e[0] for e in events}
    assert {"pseudo-labels", "step1", "step2"} <= stages


def test_loss_falls_during_step1(finished):
    history = finished[2].metadata["metrics"]["step1"]["loss_history"]
    assert all(np.isfinite(history))
    assert history[-1] < history[0]


def test_checkpoints_load_strictly_into_fresh_models(finished):
    _, config, result, _ = finished
    state, meta = load_checkpoint(result.segmenter)
    fresh = segmenter_from_preset(config.train)
    load_into(fresh, state, meta, path=result.segmenter)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, state[key])
    bstate, bmeta = load_checkpoint(result.backbone)
    load_into(segmenter_from_preset(config.train).backbone, bstate, bmeta, path=result.backbone)
    # a segmenter of another size is refused, naming the checkpoint
    other = segmenter_from_preset(config.train.with_(num_queries=4, decoder_hidden=16))
    with pytest.raises(CheckpointError, match="another architecture"):
        load_into(other, state, meta, path=result.segmenter)


def test_backbone_features_per_point(finished, store):
    result = finished[2]
    scene = store.load("room0")
    feats = backbone_features(result.backbone, scene)
    assert feats.dtype == np.float32 and feats.shape[0] == scene.num_points and feats.ndim == 2
    assert np.isfinite(feats).all()
    # the segmenter checkpoint provides the same backbone
    assert np.allclose(backbone_features(result.segmenter, scene), feats, atol=1e-5)
    model, _ = load_model(result.backbone, "backbone")
    with pytest.raises(CheckpointError, match="not a full segmenter"):
        load_model(result.backbone, "segmenter")
    del model


def test_finished_run_resumes_without_training(finished, store, method):
    base, config, result, _ = finished
    counter = CountEpochs()
    again = method.pretrain(store, config, base / "run", checkpoints_dir=base / "ckpts", resume=True,
                            callbacks=[counter])
    assert counter.epochs == 0
    assert again.metadata["id"] == result.metadata["id"]


def test_a_kill_between_a_steps_checkpoint_and_its_done_mark_does_not_train_it_again(tmp_path, finished, store,
                                                                                      method):
    """The step's segmenter.ckpt (atomic, its metrics inside) is the commit point: done.json is written again
    from it, and the checkpoint file is kept as it is (a clean CI run once rewrote it here)."""
    import shutil

    base, config, result, _ = finished
    run = tmp_path / "run"
    shutil.copytree(base / "run", run)
    marks = {step: (run / step / "done.json").read_text() for step in ("step1", "step2")}
    for step in marks:
        (run / step / "done.json").unlink()
    inodes = {step: (run / step / "segmenter.ckpt").stat().st_ino for step in marks}
    counter = CountEpochs()
    again = method.pretrain(store, config, run, checkpoints_dir=tmp_path / "ckpts", resume=True, callbacks=[counter])
    assert counter.epochs == 0
    for step, text in marks.items():
        assert json.loads((run / step / "done.json").read_text()) == json.loads(text)
        assert (run / step / "segmenter.ckpt").stat().st_ino == inodes[step]
    assert again.metadata["metrics"] == result.metadata["metrics"]


def test_resume_with_another_config_names_the_fields(finished, store, method):
    base, _, _, _ = finished
    other = method.default_config("cpu-small", **{**FAST, "lr": 1e-2, "pseudo.sigma_high": 1.3})
    with pytest.raises(ConfigError) as err:
        method.pretrain(store, other, base / "run", checkpoints_dir=base / "ckpts", resume=True)
    assert "train.lr" in str(err.value) and "pseudo.sigma_high" in str(err.value)


def test_existing_run_without_resume_is_refused(finished, store, method):
    base, config, _, _ = finished
    with pytest.raises(ConfigError, match="resume"):
        method.pretrain(store, config, base / "run", checkpoints_dir=base / "ckpts")


def test_interrupted_run_resumes_from_last_ckpt(tmp_path, store, method, finished):
    _, _, _, _ = finished  # reuse its pseudo labels' cost profile; this run has its own directory
    config = method.default_config("cpu-small", **FAST)
    with pytest.raises(RuntimeError, match="simulated"):
        method.pretrain(store, config, tmp_path / "run", checkpoints_dir=tmp_path / "ckpts",
                        callbacks=[Interrupt(at=1)])
    assert (tmp_path / "run" / "step1" / "lightning" / "last.ckpt").is_file()
    assert not (tmp_path / "run" / "step1" / "done.json").exists()
    counter = CountEpochs()
    result = method.pretrain(store, config, tmp_path / "run", checkpoints_dir=tmp_path / "ckpts", resume=True,
                             callbacks=[counter])
    assert counter.epochs == FAST["epochs1"] - 1 + 1  # step 1's epochs from the interrupted one on, then step 2's
    assert len(result.metadata["metrics"]["step1"]["loss_history"]) == FAST["epochs1"]  # history survives
    assert result.segmenter.is_file()


def test_resume_with_other_code_warns_and_records_each_version(tmp_path, store, method, monkeypatch, caplog):
    import freepoint_bench.pretext.runs as fp  # the run folder and provenance of every pretext method

    config = method.default_config("cpu-small", **{**FAST, "epochs1": 1})
    monkeypatch.setattr(fp, "code_version", lambda: {"version": "0", "git_commit": "a" * 40, "git_dirty": False})
    method.pretrain(store, config, tmp_path / "run", checkpoints_dir=tmp_path / "ckpts")
    with caplog.at_level("WARNING", logger=fp.__name__):
        method.pretrain(store, config, tmp_path / "run", checkpoints_dir=tmp_path / "ckpts", resume=True)
    assert not [r for r in caplog.records if "resuming a run started with code" in r.getMessage()]
    monkeypatch.setattr(fp, "code_version", lambda: {"version": "0", "git_commit": "b" * 40, "git_dirty": False})
    with caplog.at_level("WARNING", logger=fp.__name__):
        method.pretrain(store, config, tmp_path / "run", checkpoints_dir=tmp_path / "ckpts", resume=True)
    (warning,) = [r.getMessage() for r in caplog.records if "resuming a run started with code" in r.getMessage()]
    assert "aaaaaaaaaa" in warning and "using code bbbbbbbbbb" in warning
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["code_versions"]
    assert [v["git_commit"][0] for v in recorded] == ["a", "a", "b"]
    # overwrite starts the run again: one version, this code's
    method.pretrain(store, config, tmp_path / "run", checkpoints_dir=tmp_path / "ckpts", overwrite=True)
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["code_versions"]
    assert [v["git_commit"][0] for v in recorded] == ["b"]


def test_resume_in_another_environment_warns_and_records_it(tmp_path, store, method, monkeypatch, caplog):
    import freepoint_bench.pretext.runs as fp  # the run folder and provenance of every pretext method

    config = method.default_config("cpu-small", **{**FAST, "epochs1": 1})
    env = {"python": "3.11.9", "platform": "Linux-a", "cpu_capability": "AVX2", "torch_threads": 2, "cuda": None,
           "gpu": None, "packages": {"torch": "2.13.0", "numpy": "2.4.6"}}
    monkeypatch.setattr(fp, "environment", lambda: env)
    method.pretrain(store, config, tmp_path / "run", checkpoints_dir=tmp_path / "ckpts")
    # the same environment on another kernel: no warning
    monkeypatch.setattr(fp, "environment", lambda: {**env, "platform": "Linux-b"})
    with caplog.at_level("WARNING", logger=fp.__name__):
        method.pretrain(store, config, tmp_path / "run", checkpoints_dir=tmp_path / "ckpts", resume=True)
    assert not [r for r in caplog.records if "another environment" in r.getMessage()]
    other = {**env, "cpu_capability": "AVX512", "packages": {"torch": "2.14.0", "numpy": "2.4.6"}}
    monkeypatch.setattr(fp, "environment", lambda: other)
    with caplog.at_level("WARNING", logger=fp.__name__):
        result = method.pretrain(store, config, tmp_path / "run", checkpoints_dir=tmp_path / "ckpts", resume=True)
    (warning,) = [r.getMessage() for r in caplog.records if "another environment" in r.getMessage()]
    assert "cpu_capability: AVX2 -> AVX512" in warning and "torch: 2.13.0 -> 2.14.0" in warning
    assert "numpy" not in warning and "platform" not in warning
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["code_versions"]
    assert [v["environment"]["cpu_capability"] for v in recorded] == ["AVX2", "AVX2", "AVX512"]
    # the pretraining had finished: its published files are kept and name the environment that trained them
    assert result.metadata["environment"] == env
    (entry,) = json.loads((tmp_path / "ckpts" / "index.json").read_text())["checkpoints"].values()
    assert entry["environment"] == env
