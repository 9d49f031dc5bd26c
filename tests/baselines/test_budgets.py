"""Each baseline's pretraining budget is the original's in samples seen (issue 29 item 8): iterations × the original's
global batch, from which a run derives its epochs over its own pretraining scenes (ceil(samples / scenes)), whatever
the dataset size, batch and device count, recorded in every checkpoint; cpu-small keeps counting epochs; the S3DIS
protocols pretrain every method's paper setting on ScanNet.

The originals' numbers, written out here from their released launch scripts:
  PointContrast (PointInfoNCE): opt.max_iter=60000, trainer.batch_size=32 over misc.num_gpus=8
      (facebookresearch/PointContrast pretrain/pointcontrast/scripts/ddp_launch.sh, trainer PointNCELossTrainer)
  CSC: opt.max_iter=100000, trainer.batch_size=32 over misc.num_gpus=8
      (facebookresearch/ContrastiveSceneContexts pretrain/contrastive_scene_contexts/scripts/pretrain_sparseconv.sh)
  supervised (CSC's ScanNet semantic segmentation): optimizer.max_iter=20000, data.batch_size=48
      (facebookresearch/ContrastiveSceneContexts downstream/semseg/scripts/train_scannet.sh)
  DepthContrast: optimizer.num_epochs=1000 at BATCHSIZE_PER_REPLICA=32 on 32 GPUs over every 10th ScanNet depth frame
      (facebookresearch/DepthContrast configs/point_vox_template.yaml, README), beyond one node: scaled to 37,500
      steps of one replica's 32 views, 1.2M views (the 1000 epochs over 1201 scans the paper preset trained before).
"""

from __future__ import annotations

import pytest
from stores import MemoryStore

from baselines import csc, depthcontrast, pointcontrast, supervised
from freepoint_bench.data.synthetic import SyntheticConfig, generate_room
from freepoint_bench.errors import ConfigError
from freepoint_bench.harness.plan import Machine, make_plan
from freepoint_bench.harness.protocol import PROTOCOLS_DIR, load_protocol
from freepoint_bench.harness.run import RunOptions, Task, pretrain_config, recipe
from freepoint_bench.models.checkpoint import load_checkpoint
from freepoint_bench.pretext.base import get_method
from freepoint_bench.pretext.training import SampleBudget, make_config, run_epochs

SCANNET_TRAIN_SCANS = 1201  # ScanNet v2's training split
S3DIS_TRAIN_ROOMS = 204  # Areas 1-4 and 6 of the release (another pretraining set size)

# method: (module, iterations, global batch, samples = iterations × batch, epochs over 1201 scans, over 204 rooms),
# the epochs worked by hand: 1,920,000 / 1201 = 1598.7 -> 1599; / 204 = 9411.8 -> 9412
ORIGINALS = {
    "pointcontrast": (pointcontrast, 60_000, 32, 1_920_000, 1599, 9412),
    "csc": (csc, 100_000, 32, 3_200_000, 2665, 15687),  # 3,200,000 / 1201 = 2664.4; / 204 = 15686.3
    "supervised": (supervised, 20_000, 48, 960_000, 800, 4706),  # 960,000 / 1201 = 799.3; / 204 = 4705.9
    "depthcontrast": (depthcontrast, 37_500, 32, 1_200_000, 1000, 5883),  # scaled; / 1201 = 999.2; / 204 = 5882.4
}
# the cpu-small presets' epochs before budgets existed (docs/studies/pretext-baselines.md measured them)
CPU_SMALL_EPOCHS = {"pointcontrast": 10, "csc": 10, "depthcontrast": 10, "supervised": 30}


@pytest.mark.parametrize("method", sorted(ORIGINALS))
def test_the_paper_budget_is_the_originals_samples(method):
    module, iterations, batch, samples, _, _ = ORIGINALS[method]
    budget = module.PAPER_BUDGET
    assert (budget.iterations, budget.batch, budget.samples) == (iterations, batch, samples)
    assert samples == iterations * batch


@pytest.mark.parametrize("method", sorted(ORIGINALS))
def test_the_epochs_derive_from_the_pretraining_scenes(method):
    module, _, _, samples, on_scannet, on_s3dis = ORIGINALS[method]
    budget = module.PAPER_BUDGET
    assert budget.epochs(SCANNET_TRAIN_SCANS) == on_scannet
    assert budget.epochs(S3DIS_TRAIN_ROOMS) == on_s3dis
    for scenes, epochs in ((SCANNET_TRAIN_SCANS, on_scannet), (S3DIS_TRAIN_ROOMS, on_s3dis)):
        # the fewest whole passes that see the original's samples
        assert epochs * scenes >= samples > (epochs - 1) * scenes
    # a config with it trains those epochs whatever its own batch (the budget counts scenes, not steps)
    for batch_size in (2, 4, 32):
        config = get_method(method).default_config("paper", batch_size=batch_size, budget=budget.model_dump())
        assert run_epochs(config, SCANNET_TRAIN_SCANS) == on_scannet


@pytest.mark.parametrize("method", sorted(ORIGINALS))
def test_the_paper_preset_trains_the_original_budget(method):
    module, _, _, _, on_scannet, _ = ORIGINALS[method]
    config = get_method(method).default_config("paper")
    assert config.budget == module.PAPER_BUDGET
    assert run_epochs(config, SCANNET_TRAIN_SCANS) == on_scannet


def test_a_budget_of_more_scenes_than_samples_is_one_pass_and_of_none_is_refused():
    assert SampleBudget(iterations=1, batch=4).epochs(10) == 1
    assert SampleBudget(iterations=5, batch=2).epochs(3) == 4  # 10 samples: 4 passes over 3 scenes see 12
    with pytest.raises(ConfigError, match="at least one pretraining scene"):
        SampleBudget(iterations=1, batch=1).epochs(0)


@pytest.mark.parametrize("method", sorted(CPU_SMALL_EPOCHS))
def test_cpu_small_counts_epochs_and_records_no_budget(method):
    config = get_method(method).default_config("cpu-small")
    assert config.budget is None and config.epochs == CPU_SMALL_EPOCHS[method]
    assert "budget" not in config.model_dump(mode="json")
    assert run_epochs(config, SCANNET_TRAIN_SCANS) == run_epochs(config, 2) == CPU_SMALL_EPOCHS[method]


def test_an_explicit_epochs_replaces_a_budget_and_both_are_refused():
    method = get_method("pointcontrast")
    budget = pointcontrast.PAPER_BUDGET.model_dump()
    with_budget = method.default_config("cpu-small", budget=budget)
    assert with_budget.budget == pointcontrast.PAPER_BUDGET
    assert with_budget.model_dump(mode="json")["budget"] == {"iterations": 60_000, "batch": 32}
    # a preset that sets a budget (a paper preset counted in samples) and an override of epochs: the epochs count
    presets = {**pointcontrast.PRESETS, "paper": {**pointcontrast.PRESETS["paper"], "budget": budget}}
    assert make_config(pointcontrast.PointContrastConfig, "paper", presets, {}).budget is not None
    counted = make_config(pointcontrast.PointContrastConfig, "paper", presets, {"epochs": 7})
    assert counted.budget is None and run_epochs(counted, SCANNET_TRAIN_SCANS) == 7
    assert make_config(pointcontrast.PointContrastConfig, "paper", presets, {"budget": None}).budget is None
    with pytest.raises(ConfigError, match="epochs and budget both given"):
        method.default_config("cpu-small", epochs=3, budget=budget)


def test_a_run_trains_the_derived_epochs_and_records_the_budget(tmp_path):
    store = MemoryStore(
        [generate_room(seed, SyntheticConfig(num_points=2000), name=f"synth_{seed:04d}") for seed in (0, 1, 2)]
    )
    method = get_method("depthcontrast")
    # 2 iterations of 2 scenes: 4 samples over 3 rooms, 2 passes (6 samples), each ceil(3 / 2) = 2 steps at batch 2
    config = method.default_config("cpu-small", batch_size=2, voxel_size_m=0.2,
                                   budget={"iterations": 2, "batch": 2})
    result = method.pretrain(store, config, tmp_path / "run", checkpoints_dir=tmp_path / "ckpt")
    record = {"iterations": 2, "batch": 2, "samples": 4, "scenes": 3, "epochs": 2}
    assert result.metadata["budget"] == record
    assert result.metadata["config"]["budget"] == {"iterations": 2, "batch": 2}
    assert (result.metadata["metrics"]["train"]["epochs"], result.metadata["metrics"]["train"]["steps"]) == (2, 4)
    _, saved = load_checkpoint(result.backbone)
    assert saved["budget"] == record


def test_every_s3dis_protocol_pretrains_every_method_on_scannet(tmp_path):
    # the paper's Tables 2/3 setting: each method's paper preset pretrained on ScanNet's scans, never on S3DIS
    names = sorted(p.stem for p in PROTOCOLS_DIR.glob("s3dis-*.toml"))
    assert len(names) >= 10
    opts = RunOptions(pretrain_root=tmp_path)
    for name in names:
        spec = load_protocol(name)
        assert (spec.pretrain_preset, spec.pretrain_dataset) == ("paper", "scannet"), name
        rec = recipe(spec, opts)
        assert (rec.pretrain_preset, rec.pretrain_dataset, rec.pretrain_root) == ("paper", "scannet", tmp_path)
        for method in ("freepoint", *sorted(ORIGINALS)):
            assert pretrain_config(method, rec, opts).train.name == "paper", (name, method)


def test_the_plan_shows_the_budget_and_the_epochs_it_derives(tmp_path):
    for room in [f"Area_{a}/office_1" for a in range(1, 7)]:  # a room of every area
        (tmp_path / "s3dis" / room / "Annotations").mkdir(parents=True)
    for scan in ("scene0000_00", "scene0001_00", "scene0002_00"):  # three of ScanNet's training scans
        (tmp_path / "scannet" / "scans" / scan).mkdir(parents=True)
        (tmp_path / "scannet" / "scans" / scan / f"{scan}_vh_clean_2.ply").write_bytes(b"")
    opts = RunOptions(root=tmp_path / "s3dis", pretrain_root=tmp_path / "scannet", cache=tmp_path / "cache",
                      runs=tmp_path / "runs", results=tmp_path / "results",
                      pretrain_overrides={"budget": {"iterations": 60_000, "batch": 32}})
    tasks = [Task("s3dis-full", m, 0) for m in ("pointcontrast", "freepoint")]
    plan = make_plan(tasks, opts, machine=Machine(cuda=True, bf16=True, backends=("spconv",)))
    pre = {p.method: p for p in plan.pretrainings}
    pc = pre["pointcontrast"]
    assert pc.budget == "60000 iterations × 32 = 1920000 samples"
    assert (pc.scenes, pc.epochs, pc.batch_size) == (3, 640_000, 4)  # 1,920,000 / 3 scans
    assert pc.steps == 640_000  # ceil(3 / 4) = 1 step a pass
    assert pre["freepoint"].budget == ""  # FreePoint counts its two steps' epochs; the budget is not its field

