"""The recipe follows from the protocol: pretraining preset and dataset, scratch from the fine-tuning model, and
a backbone of another architecture refused before anything trains."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from freepoint_bench.data.synthetic import SyntheticConfig, write_synthetic_s3dis
from freepoint_bench.errors import CheckpointError, ConfigError
from freepoint_bench.harness.protocol import PROTOCOLS_DIR, TRAIN_SCENES, available_protocols, load_protocol
from freepoint_bench.harness.run import (
    RunOptions,
    Task,
    backbone_architecture,
    check_recipe,
    check_tasks,
    finetune_checkpoints,
    named_pretrain_run_dir,
    pretrain_config,
    pretrain_run_dir,
    pretrain_runs,
    recipe,
)

METHODS = ("freepoint", "pointcontrast", "csc", "depthcontrast", "supervised", "scratch")

# content_hash() of every shipped protocol before the pretraining recipe joined ProtocolSpec: results written
# then must still match on resume (run_task refuses a changed protocol)
HASHES = {
    "s3dis-10pct-masks": "0b0562b3f585b074599f810939e15ee066b9a0a9b3ab896487efdf5d391a7333",
    "s3dis-10pct-scenes": "b37ba688238437a5e5880254a48e7351f95081fda9a6c3297ae877de5fb8fa89",
    "s3dis-20pct-masks": "3dc37186202c9801ce17b17f83fd1dc04951d32623ca1592e74fdccf946178a6",
    "s3dis-20pct-scenes": "1c5b0ea7d63839be75f5a372bcb4a3d962acc6f172775d6e671e2570c4bf55fb",
    "s3dis-6fold-full": "e5f29325112020ad721f954157e0e11810d3dc0443166720ef4d30115febb775",
    "s3dis-full": "6e8bf9a7626f57354fe505b15d3216c94625b51082e7c27ca56b5f90fe4e332d",
    "scannet-dev-10pct-masks": "5f702334cf12cea83396a9bfbe2fe5749b7b94bb91da46db573d1a31e57c0765",
    "scannet-dev-20pct-masks": "86333b32583c2e98c887dda4dd5118672d8b8f87a719f26e5d3c5e108f4b4d52",
    "scannet-dev-full-masks": "5fd406ba69df42c160a3e4e5340bff3e637b51c41491d43b3491f795116c4283",
    # the synthetic protocols' hashes moved when they gained recipes that learn (issue 28: overrides, hashed)
    "synthetic-s3dis-20pct-masks": "3c2d74c728099db1a1b5baab5cf0782cc9a6b68d94f0d66a79e2df309259d330",
    "synthetic-s3dis-50pct-scenes": "c81f2aacf98e3bff34f5bcf7e23278551f0182b5ef76167698c068b6c09cefcd",
    # the probe ladder's rungs (issue 28): their task and split_protocol are hashed; the linear and semantic rungs'
    # hashes moved when they took Pointcept's recipes (overrides, hashed; no S3DIS results existed to keep)
    "s3dis-linear": "d4929e3e319018cb5f9176ece6d474f77f8356c95a6fc19ed4d529cdd612dedd",
    "s3dis-10pct-scenes-semseg": "fc53be5898f594d65acf488b6458e2a3a1c3783a57da48b0609e9286fe81419a",
    "s3dis-20pct-scenes-semseg": "33ff24a851211eec99f39eaf4481ba3deabf1f89e6a4808eb68e1065a8b86638",
    "s3dis-10pct-masks-frozen": "eaed33da59ae2eb1c762eca5da25b75a41f8433d64a1fb7ccab20c0d79985af4",
    "synthetic-s3dis-linear": "d583dd91bce8ec2a8412c337a6741d0f0510e80c771cd594ece585060ef0b4ed",
    "synthetic-s3dis-50pct-scenes-semseg": "cb3e47a1f2f364e3d57bd05fbc6728e32f472e85a1332ff9924b5e4d6385c578",
    "synthetic-s3dis-20pct-masks-frozen": "692ffe4d0aa1a5ffa39b8e1ffcc042a2efd81321d3d0652aa901636ba2ee8c68",
    "synthetic-s3dis-20pct-scenes-semseg": "348d4bba2261508e82e226519aa610ed82360b52c543fd463c95342bd1f68a1a",
    # the dev-scan rungs with their measured recipes (overrides, hashed; their first hashes had no results to keep)
    "scannet-dev-linear": "ecc46beb0e998560c6168ccb719adedd6aed815dbb5daac2f5c74e3d7db19266",
    "scannet-dev-full-semseg": "6106043749c7a0e4d4a54ea1fb81c23d55bf00a6ca9512311483d1c1eb654eb0",
    "scannet-dev-20pct-scenes-linear": "594b10eb72f8c0a72c588d107194485e95b32a5ed2477d32d03535efa204dfce",
    "scannet-dev-20pct-scenes-semseg": "41a05068b434ac36c9d0dd0b0175214f9a88b4a6b975aa4272409171759e4463",
    # ScanNet's data-efficient benchmark (issue 30): official_file and points_per_scene are hashed
    "scannet-de-la100-insseg": "1ad569e5c623d0f85d1d2fc26cfbdfbd6b282436b4c1e3f15d7acdf069d4ee23",
    "scannet-de-la100-semseg": "ab476e075be733d69847df20191bb710ccb75ad8a34c209ff5d5b05d4857c673",
    "scannet-de-la20-insseg": "9c6768fdd8174b5cac7b1117b4a5b1f17dc2f09f4d4a35c3fc953d661ffec8a3",
    "scannet-de-la20-semseg": "3e9d1832e4219215580c3ec33dd455f8a51a944c7ac013a199b957a5c18938a2",
    "scannet-de-la200-insseg": "19069f4ea042c865f3c221efc4a1fb1cfa5f21afef7b49b3453c5ce6773a75f2",
    "scannet-de-la200-semseg": "b65867e63d468fb04d255b4cb2bd29bba0adcf733ac696b6925160a171f8690e",
    "scannet-de-la50-insseg": "3b1cb3fdefce3e948402de6d2f702ef4d31b238a3a624b7dc0763828d504da99",
    "scannet-de-la50-semseg": "02920bb24497e696cc61703816ba0bb86bd2bf055143491d950aa656e5a4d8ce",
    "scannet-de-lr1-insseg": "c15315f8baddde3d041d5afdecfcf996a670261ff8ab5bb466a5ac483f5eadac",
    "scannet-de-lr1-semseg": "b3c3259126fb2452ac88e9ab9264c44ef5059003c366eb3af5e8d998fbde3a12",
    "scannet-de-lr10-insseg": "53f9a33bf6b772c3715873f52886587b2ee3723e9cd1cd808109055da2432d18",
    "scannet-de-lr10-semseg": "a0cc5b540475e0a362cc379d759a72b330f519a05783431fcc067696554c04fc",
    "scannet-de-lr20-insseg": "775b4af773f7b886dfc912ead7e06f3d894cd73095f445a133b235cb18b0cd21",
    "scannet-de-lr20-semseg": "830bdbbcbdd363429e84c4002f0c244168b72585a87c6b723bcbb4f32c2e4ff2",
    "scannet-de-lr5-insseg": "d40923c0a60afad869f6abd9149be2d8eb926ddb683523a44ccee8a08fe5a31f",
    "scannet-de-lr5-semseg": "dadaaac5218b9b09eb783ea1a325433244627160702b2706d95fefbad2ded298",
}


def test_protocol_hashes_are_those_results_were_written_with():
    assert set(HASHES) <= set(available_protocols())
    for name, digest in HASHES.items():
        assert load_protocol(name).content_hash() == digest, name


def test_the_recipe_is_left_out_of_the_hash(tmp_path):
    text = (PROTOCOLS_DIR / "s3dis-10pct-masks.toml").read_text()
    edited = text.replace('pretrain_dataset = "scannet"', 'pretrain_dataset = "train-scenes"')
    assert edited != text
    (tmp_path / "s3dis-10pct-masks.toml").write_text(edited)
    spec = load_protocol("s3dis-10pct-masks", tmp_path)
    assert spec.pretrain_dataset == TRAIN_SCENES and spec.content_hash() == HASHES["s3dis-10pct-masks"]
    (tmp_path / "s3dis-10pct-masks.toml").write_text(text.replace("fraction = 0.1", "fraction = 0.15"))
    assert load_protocol("s3dis-10pct-masks", tmp_path).content_hash() != HASHES["s3dis-10pct-masks"]


def test_pretraining_run_folders_keep_their_names():
    # the folder a finished pretraining lives in: the same config must find it again (values from before the
    # recipe existed, when run.py hashed method, config, sorted scenes and the store folder itself)
    names, store = ["Area_2/office_2", "Area_1/office_1"], "cache/s3dis-abc"
    opts = RunOptions(runs="runs")
    rec = recipe(load_protocol("synthetic-s3dis-50pct-scenes"), opts)
    freepoint = pretrain_config("freepoint", rec, opts)
    assert pretrain_run_dir("runs", "freepoint", freepoint, names, store).name == "freepoint-188ba49e1e"
    scratch = pretrain_config("scratch", rec, opts, seed=2)  # today's cpu-small scratch, seed 2
    assert pretrain_run_dir("runs", "scratch", scratch, names, store).name == "scratch-3555b800ca"


def test_the_pretrain_command_and_run_keep_their_runs_in_one_folder():
    # `bench.py pretrain` names its run by method and dataset (what --resume continues); `run` by a hash of what it
    # trains; both under <runs>/pretrain
    assert named_pretrain_run_dir("freepoint", "scannet") == Path("runs/pretrain/freepoint-scannet")
    assert named_pretrain_run_dir("csc", "s3dis", runs="work") == Path("work/pretrain/csc-s3dis")
    opts = RunOptions(runs="work")
    config = pretrain_config("scratch", recipe(load_protocol("synthetic-s3dis-50pct-scenes"), opts), opts)
    assert pretrain_run_dir("work", "scratch", config, ["a"], "cache").parent == pretrain_runs("work")


def test_s3dis_protocols_pretrain_the_paper_model_on_scannet(tmp_path):
    spec = load_protocol("s3dis-10pct-masks")
    rec = recipe(spec, RunOptions())
    assert (rec.pretrain_preset, rec.pretrain_dataset, rec.preset_given) == ("paper", "scannet", False)
    opts = RunOptions(pretrain_root=tmp_path)
    want = backbone_architecture(rec.finetune.train)
    assert want["preset"] == "34C"
    for method in METHODS:
        if method == "scratch":
            assert pretrain_config(method, rec, opts, seed=1).train.seed == 1
        assert backbone_architecture(pretrain_config(method, rec, opts).train) == want, method
        assert check_recipe(Task(spec.name, method, 0), spec, opts).pretrain_root == tmp_path
    # the stand-ins keep pretraining cpu-small on their own training scenes
    stand_in = recipe(load_protocol("synthetic-s3dis-20pct-masks"), RunOptions())
    assert (stand_in.pretrain_preset, stand_in.pretrain_dataset) == ("cpu-small", TRAIN_SCENES)
    # another fine-tuning preset takes its own pretraining preset along, not the protocol's
    small = recipe(spec, RunOptions(preset="cpu-small"))
    assert small.pretrain_preset == "cpu-small"
    assert backbone_architecture(pretrain_config("scratch", small, opts).train)["preset"] == "small"


def test_a_pretraining_preset_of_another_backbone_is_refused_in_one_line(tmp_path):
    spec = load_protocol("s3dis-10pct-masks")
    opts = RunOptions(pretrain_preset="cpu-small", pretrain_root=tmp_path)
    for method in ("freepoint", "pointcontrast"):
        with pytest.raises(ConfigError) as e:
            check_recipe(Task(spec.name, method, 0), spec, opts)
        msg = str(e.value)
        assert "\n" not in msg and "preset='small' here, '34C' for fine-tuning" in msg and "--pretrain-preset" in msg
    # scratch follows the fine-tuning model whatever the pretraining preset
    assert check_recipe(Task(spec.name, "scratch", 0), spec, opts).pretrain_preset == "cpu-small"
    # a pretraining field that changes the backbone is caught the same way
    opts = RunOptions(pretrain_overrides={"stem_kernel_size": 3}, pretrain_root=tmp_path)
    with pytest.raises(ConfigError, match="stem_kernel_size=3 here, 5 for fine-tuning"):
        check_recipe(Task(spec.name, "csc", 0), spec, opts)


def test_a_pretraining_source_that_cannot_be_used_is_refused(tmp_path):
    spec = load_protocol("s3dis-10pct-masks")
    with pytest.raises(ConfigError, match="pretrains on scannet: pass --pretrain-root"):
        check_recipe(Task(spec.name, "freepoint", 0), spec, RunOptions())
    own = RunOptions(pretrain_dataset=TRAIN_SCENES)
    assert check_recipe(Task(spec.name, "freepoint", 0), spec, own).pretrain_root is None
    with pytest.raises(ConfigError, match="supervised pretraining needs labelled data"):
        check_recipe(Task(spec.name, "supervised", 0), spec, own)
    stand_in = load_protocol("synthetic-s3dis-20pct-masks")
    with pytest.raises(ConfigError, match="name the dataset too"):
        check_recipe(Task(stand_in.name, "csc", 0), stand_in, RunOptions(pretrain_root=tmp_path))
    # scratch pretrains nothing: no pretraining data needed
    assert check_recipe(Task(spec.name, "scratch", 0), spec, RunOptions()).finetune.train.name == "paper"


def test_a_given_checkpoint_of_another_backbone_is_refused_before_any_cell(tmp_path):
    from freepoint_bench.engine.checkpoints import save_model_checkpoint
    from freepoint_bench.engine.module import segmenter_config
    from freepoint_bench.engine.presets import get_preset
    from freepoint_bench.models.backbone import Res16UNet

    small = Res16UNet(segmenter_config(get_preset("cpu-small")).backbone)
    path = save_model_checkpoint(tmp_path / "small.ckpt", small, {"method": "pointcontrast", "data": {}})
    opts = RunOptions(given={"pointcontrast": [path]}, pretrain_root=tmp_path)
    tasks = [Task("synthetic-s3dis-20pct-masks", "pointcontrast", 0), Task("s3dis-10pct-masks", "pointcontrast", 0)]
    check_tasks(tasks[:1], opts)  # cpu-small fine-tuning: the same backbone
    with pytest.raises(CheckpointError) as e:
        check_tasks(tasks, opts)
    assert "\n" not in str(e.value) and "preset='small' here, '34C' for fine-tuning" in str(e.value)


def test_run_refuses_a_mismatch_before_anything_trains(bench_cli, tmp_path, monkeypatch):
    """The issue's new user: `run` on a paper protocol with a cpu-small pretraining. Before the recipe existed it
    pretrained (hours on a cluster) and then failed to load the checkpoint; now it stops before any work."""
    import freepoint_bench.harness.run as run

    def trained(*args, **kwargs):
        raise AssertionError("pretraining started")

    monkeypatch.setattr(run, "pretrain_checkpoint", trained)
    root = tmp_path / "s3dis"
    write_synthetic_s3dis(root, 6, seed=1, config=SyntheticConfig(num_points=1500))  # one room per area
    protocols = tmp_path / "protocols"
    (protocols / "splits").mkdir(parents=True)
    shutil.copy(PROTOCOLS_DIR / "s3dis-10pct-masks.toml", protocols)
    code, _, err = bench_cli("run", "--methods", "pointcontrast,scratch", "--protocols", "s3dis-10pct-masks",
                             "--root", root, "--protocols-dir", protocols, "--pretrain-preset", "cpu-small",
                             "--pretrain-root", tmp_path / "scannet",
                             "--results", tmp_path / "results", "--runs", tmp_path / "runs",
                             "--cache", tmp_path / "cache", "--checkpoints", tmp_path / "ckpt")
    assert code == 2 and "pointcontrast: pretraining preset cpu-small (--pretrain-preset)" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()


def test_scratch_on_a_paper_protocol_needs_no_pretraining_data(tmp_path, monkeypatch):
    """The README's `finetune --protocol s3dis-... --method scratch --root R`: no --pretrain-root. scratch records the
    fold's training rooms and never opens the protocol's pretraining dataset (it crashed with a TypeError listing
    ScanNet scenes under a root of None)."""
    import freepoint_bench.harness.run as run

    root = tmp_path / "s3dis"
    write_synthetic_s3dis(root, 6, seed=1, config=SyntheticConfig(num_points=1500))
    protocols = tmp_path / "protocols"
    (protocols / "splits").mkdir(parents=True)
    shutil.copy(PROTOCOLS_DIR / "s3dis-10pct-masks.toml", protocols)
    spec = load_protocol("s3dis-10pct-masks", protocols)
    opts = RunOptions(root=root, cache=tmp_path / "cache", runs=tmp_path / "runs", checkpoints=tmp_path / "ckpt",
                      protocols_dir=protocols)
    seen = {}

    def pretrained(method, store, names, opts, config, progress=None):
        seen.update(method=method, names=sorted(names), store=store)
        return tmp_path / "scratch.ckpt"

    monkeypatch.setattr(run, "pretraining_scenes", lambda *a: pytest.fail("opened the pretraining dataset"))
    monkeypatch.setattr(run, "pretrain_checkpoint", pretrained)
    assert run.fold_checkpoint(Task(spec.name, "scratch", 3), spec, 0, opts) == tmp_path / "scratch.ckpt"
    assert seen["method"] == "scratch" and seen["names"]
    assert all(not name.startswith("Area_5/") for name in seen["names"])  # the fold's training rooms only


def test_finetune_needs_a_checkpoint_except_for_scratch():
    assert finetune_checkpoints([], "scratch") == ("scratch", {})
    with pytest.raises(ConfigError, match="give --checkpoint .* or --method scratch"):
        finetune_checkpoints([], None)
    with pytest.raises(ConfigError, match="--method csc needs --checkpoint"):
        finetune_checkpoints([], "csc")
