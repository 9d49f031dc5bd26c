"""PointContrast, CSC and DepthContrast end to end on two small synthetic rooms: the published backbone loads
like FreePoint's cpu-small backbone, the run directory resumes and refuses mismatches, pairs correspond."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pytorch_lightning.callbacks import Callback
from stores import MemoryStore

from baselines.pairs import PairDataset, collate_pairs
from freepoint_bench.data.synthetic import SyntheticConfig, generate_room
from freepoint_bench.data.views import ViewConfig
from freepoint_bench.engine.checkpoints import load_model, read_index
from freepoint_bench.engine.module import segmenter_from_preset
from freepoint_bench.engine.presets import get_preset
from freepoint_bench.errors import ConfigError
from freepoint_bench.models.checkpoint import load_into
from freepoint_bench.pretext.base import PretextMethod, get_method

METHODS = ["pointcontrast", "csc", "depthcontrast"]


class CountEpochs(Callback):
    def __init__(self):
        self.epochs = 0

    def on_train_epoch_start(self, trainer, pl_module):
        self.epochs += 1


@pytest.fixture(scope="module")
def store():
    cfg = SyntheticConfig(num_points=3000)
    return MemoryStore([generate_room(seed, cfg, name=f"synth_{seed:04d}") for seed in (0, 1)])


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory):
    """One epoch of every method; returns {method: (result, run dir, checkpoints dir)}."""
    out = {}
    for name in METHODS:
        base = tmp_path_factory.mktemp(name)
        method = get_method(name)
        config = method.default_config("cpu-small", epochs=1)
        result = method.pretrain(store, config, base / "run", checkpoints_dir=base / "ckpt")
        out[name] = (result, base / "run", base / "ckpt")
    return out


@pytest.mark.parametrize("name", METHODS)
def test_backbone_checkpoint_loads_as_freepoints_cpu_small_backbone(trained, name):
    result, _, ckpts = trained[name]
    model, meta = load_model(result.backbone, part="backbone")
    reference = segmenter_from_preset(get_preset("cpu-small")).backbone
    assert model.architecture() == reference.architecture()
    assert meta["backbone_config"] == reference.config.model_dump(mode="json")
    load_into(reference, model.state_dict(), meta, path=result.backbone)  # strict: same keys and shapes
    assert meta["method"] == name and meta["id"].startswith(f"{name}-synthetic-")
    assert meta["data"]["scenes"] == ["synth_0000", "synth_0001"]
    assert meta["input"]["voxel_size_m"] == 0.05 and meta["input"]["rgb"] in ("used", "zeroed")
    assert result.backbone.name == f"{meta['id']}-backbone.ckpt" and result.backbone.parent == ckpts
    index = read_index(ckpts / "index.json")
    assert index["checkpoints"][meta["id"]]["method"] == name
    history = meta["metrics"]["train"]["loss_history"]
    assert len(history) == 1 and np.isfinite(history[0])
    # training changed the weights away from the seeded initialisation
    init = segmenter_from_preset(get_preset("cpu-small")).backbone.state_dict()
    assert any(not torch.equal(v, init[k]) for k, v in model.state_dict().items() if v.is_floating_point())


@pytest.mark.parametrize("name", METHODS)
def test_is_a_registered_pretext_method(name):
    assert isinstance(get_method(name), PretextMethod)


def test_finished_run_resumes_without_training_and_republishes(store, trained):
    result, run, ckpts = trained["pointcontrast"]
    method = get_method("pointcontrast")
    counter = CountEpochs()
    again = method.pretrain(store, method.default_config("cpu-small", epochs=1), run, checkpoints_dir=ckpts,
                            resume=True, callbacks=[counter])
    assert counter.epochs == 0 and again.backbone == result.backbone
    a, _ = load_model(result.backbone, part="backbone")
    b, _ = load_model(again.backbone, part="backbone")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert len(json.loads((run / "run.json").read_text())["code_versions"]) == 2


def test_run_dir_refuses_other_settings_and_unasked_reuse(store, trained):
    _, run, ckpts = trained["csc"]
    method = get_method("csc")
    with pytest.raises(ConfigError, match="num_partitions"):
        method.pretrain(store, method.default_config("cpu-small", epochs=1, num_partitions=4), run,
                        checkpoints_dir=ckpts, resume=True)
    with pytest.raises(ConfigError, match="already holds"):
        method.pretrain(store, method.default_config("cpu-small", epochs=1), run, checkpoints_dir=ckpts)


def test_interrupted_run_resumes_from_last_ckpt(store, tmp_path):
    method = get_method("depthcontrast")
    config = method.default_config("cpu-small", epochs=2, batch_size=1)

    class Stop(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                raise RuntimeError("simulated interruption")  # after epoch 0's last.ckpt

    with pytest.raises(RuntimeError, match="simulated"):
        method.pretrain(store, config, tmp_path / "run", checkpoints_dir=tmp_path / "ckpt", callbacks=[Stop()])
    assert (tmp_path / "run" / "train" / "lightning" / "last.ckpt").exists()
    assert not (tmp_path / "run" / "train" / "done.json").exists()
    counter = CountEpochs()
    result = method.pretrain(store, config, tmp_path / "run", checkpoints_dir=tmp_path / "ckpt", resume=True,
                             callbacks=[counter])
    assert counter.epochs == 1  # only the missing epoch
    assert len(result.metadata["metrics"]["train"]["loss_history"]) == 2


def test_config_overrides_route_and_paper_presets_keep_the_released_values():
    pc = get_method("pointcontrast").default_config("paper")
    assert (pc.temperature, pc.num_pairs, pc.use_rgb, pc.optim.lr, pc.optim.momentum) == (0.4, 4096, False, 0.05, 0.8)
    assert pc.train.backbone == "34C" and pc.optim.schedule == "exponential"
    csc = get_method("csc").default_config("paper")
    # r1, r2: the launch script's 2 and 20 voxels of 2.5 cm, here in 2 cm voxels (test_paper_recipes.py)
    assert (csc.num_partitions, csc.r1, csc.r2, csc.num_points, csc.temperature) == (8, 2.5, 25.0, 4096, 0.4)
    dc = get_method("depthcontrast").default_config("paper")
    assert (dc.momentum, dc.queue_size, dc.embedding_dim, dc.temperature) == (0.999, 131072, 128, 0.1)
    assert (dc.optim.momentum, dc.optim.schedule) == (0.9, "cosine")
    small = get_method("depthcontrast").default_config(
        "cpu-small", epochs=3, grad_clip=1.0,
        **{"optim.lr": 0.05, "views.crop_fraction": 0.5, "augment.rotate_z": False})
    assert small.epochs == 3 and small.train.grad_clip == 1.0 and small.optim.lr == 0.05
    assert small.views.crop_fraction == 0.5 and small.train.augment.rotate_z is False and small.queue_size == 16
    with pytest.raises(ConfigError, match="unknown"):
        get_method("csc").default_config("cpu-small", partitions=3)
    with pytest.raises(ConfigError, match="num_partitions"):
        get_method("csc").default_config("cpu-small", num_partitions=3)


def test_voxel_matches_correspond_and_are_one_to_one(store):
    preset = get_preset("cpu-small")
    views = ViewConfig(jitter_sigma_m=0.0)
    dataset = PairDataset(store, store.names(), preset, views, mode="scene", use_rgb=False)
    sample = dataset[(0, 0)]
    m = sample["matches"]
    assert len(m) > 20
    assert len(np.unique(m[:, 0])) == len(m) == len(np.unique(m[:, 1]))
    assert np.all(sample["a_feats"][:, :3] == 0)  # geometry-only: the rgb channels are zeroed
    # each voxel's points lie within one voxel diagonal of its centre, so matched voxel centres (in the scene's
    # frame) are within two half-diagonals plus the point-match radius
    scene = store.load("synth_0000")
    pair = dataset.pair(scene, np.random.default_rng([preset.seed, 0, 0]))
    from freepoint_bench.engine.data import make_sample

    centres = []
    for view in (pair.a, pair.b):
        s = make_sample(view.scene("x"), preset, train=False)
        count = np.bincount(s["inverse"])
        centres.append(np.stack([np.bincount(s["inverse"], weights=view.origin[:, c]) / count for c in range(3)], 1))
    gap = np.linalg.norm(centres[0][m[:, 0]] - centres[1][m[:, 1]], axis=1)
    assert gap.max() <= np.sqrt(3) * preset.voxel_size_m * 1.1 + views.match_radius_m
    batch = collate_pairs([dataset[(0, 0)], dataset[(0, 1)]])
    assert batch["a_coords"].shape[1] == 4 and int(batch["matches"][:, 0].max()) < len(batch["a_coords"])
    assert set(batch["match_scene"].tolist()) == {0, 1}


def test_cli_pretrain_runs_a_baseline(tmp_path, capsys):
    from freepoint_bench.cli import main
    from freepoint_bench.data.synthetic import write_synthetic_dataset

    root = tmp_path / "synthetic"
    write_synthetic_dataset(root, num_scenes=2, seed=3, config=SyntheticConfig(num_points=3000))
    args = ["pretrain", "--method", "csc", "--dataset", "synthetic", "--root", root, "--cache", tmp_path / "cache",
            "--scene", "synth_0000", "--scene", "synth_0001", "--epochs", "1", "--set", "num_partitions=4",
            "--out", tmp_path / "run", "--checkpoints", tmp_path / "ckpt"]
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    assert int(exc.value.code or 0) == 0, capsys.readouterr().err
    ckpt = next((tmp_path / "ckpt").glob("csc-synthetic-*-backbone.ckpt"))
    _, meta = load_model(ckpt, part="backbone")
    assert meta["config"]["num_partitions"] == 4 and meta["config"]["epochs"] == 1


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without torch.distributed")
def test_two_rank_ddp_depthcontrast_on_cpu(tmp_path):
    """Lightning's DDP (gloo, two CPU processes) through bench.py: the queue takes the keys of both ranks."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from freepoint_bench.data.synthetic import write_synthetic_dataset

    root = tmp_path / "synthetic"
    write_synthetic_dataset(root, num_scenes=2, seed=3, config=SyntheticConfig(num_points=3000))
    bench = Path(__file__).resolve().parents[2] / "bench.py"
    argv = [sys.executable, str(bench), "pretrain", "--method", "depthcontrast", "--dataset", "synthetic",
            "--root", str(root), "--cache", str(tmp_path / "cache"), "--epochs", "2", "--devices", "2",
            "--set", "batch_size=1", "--out", str(tmp_path / "run"), "--checkpoints", str(tmp_path / "ckpt")]
    done = subprocess.run(argv, cwd=tmp_path, env={**os.environ, "COLUMNS": "200"}, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("pretrain depthcontrast on synthetic") == 1, done.stdout
    (ckpt,) = (tmp_path / "ckpt").glob("depthcontrast-*-backbone.ckpt")
    _, meta = load_model(ckpt, part="backbone")
    assert meta["metrics"]["train"]["steps"] == 2  # one scene per rank per step: 1 step per epoch
    last = torch.load(tmp_path / "run" / "train" / "lightning" / "last.ckpt", weights_only=True, map_location="cpu")
    # 2 steps x 2 ranks x 1 key were enqueued on every rank: the pointer moved by 4, not 2
    assert int(last["state_dict"]["queue.ptr"]) == 4
