"""`bench.py run --plan`: every cell, what it starts from, its budget and what would stop it, before any GPU hour."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from freepoint_bench.errors import ConfigError
from freepoint_bench.harness import plan as plan_module
from freepoint_bench.harness.plan import Machine, load_throughput, make_plan, plan_machine, read_throughput
from freepoint_bench.harness.protocol import PROTOCOLS_DIR, read_room_list
from freepoint_bench.harness.run import RunOptions, Task, expand

# splits older versions froze into the source tree (git-ignored; a checkout may still hold some): a test's copy
# of the protocols folder takes only the shipped ones
SHIPPED_ONLY = shutil.ignore_patterns("*-masks.json", "*-masks.json.sha256", "synthetic-*")

README_METHODS = "freepoint,pointcontrast,csc,depthcontrast,supervised,scratch"
README_PROTOCOLS = "s3dis-10pct-masks,s3dis-20pct-masks,s3dis-10pct-scenes,s3dis-20pct-scenes"
GPU = Machine(cuda=True, bf16=True, backends=("spconv",))
CPU = Machine(cuda=False, bf16=False, backends=("spconv",))
SCANS = ["scene0000_00", "scene0001_00", "scene0002_00", "scene0011_00"]  # 3 of ScanNet's train split, 1 of val


def s3dis_tree(root: Path, rooms: list[str]) -> Path:
    """Writes an S3DIS-layout skeleton (Area_N/<room>/Annotations/): all a plan reads of it."""
    for name in rooms:
        (root / name / "Annotations").mkdir(parents=True)
    return root


def scannet_tree(root: Path, scans: list[str]) -> Path:
    """Writes a ScanNet-layout skeleton (scans/<scan>/<scan>_vh_clean_2.ply)."""
    for name in scans:
        folder = root / "scans" / name
        folder.mkdir(parents=True)
        (folder / f"{folder.name}_vh_clean_2.ply").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def release_rooms() -> list[str]:
    return read_room_list(PROTOCOLS_DIR / "splits" / "s3dis-rooms.txt")


@pytest.fixture()
def wide(monkeypatch):
    """A console wide enough that no table cell wraps (the captured terminal is narrow)."""
    from freepoint_bench.cli import console

    monkeypatch.setattr(console, "width", 400)


@pytest.fixture()
def ws(tmp_path, release_rooms):
    """The README's setting: every room of the release (names only), 4 ScanNet scans, a private protocols folder."""
    protocols = tmp_path / "protocols"
    shutil.copytree(PROTOCOLS_DIR / "splits", protocols / "splits", ignore=SHIPPED_ONLY)
    for name in README_PROTOCOLS.split(","):
        shutil.copy(PROTOCOLS_DIR / f"{name}.toml", protocols)
    return {"root": s3dis_tree(tmp_path / "s3dis", release_rooms), "scannet": scannet_tree(tmp_path / "scannet", SCANS),
            "protocols": protocols, "tmp": tmp_path}


def where(ws) -> list:
    t = ws["tmp"]
    return ["--root", ws["root"], "--protocols-dir", ws["protocols"], "--results", t / "results", "--runs",
            t / "runs", "--cache", t / "cache", "--checkpoints", t / "ckpt"]


def readme_plan(bench_cli, ws, *extra):
    return bench_cli("run", "--methods", README_METHODS, "--protocols", README_PROTOCOLS, "--seeds", "0", "1", "2",
                     *where(ws), "--pretrain-dataset", "scannet", "--pretrain-root", ws["scannet"], "--plan", *extra)


def test_the_readme_example_plans_every_cell_and_exits_0(bench_cli, ws, monkeypatch, wide):
    monkeypatch.setattr(plan_module, "detect_machine", lambda: GPU)
    monkeypatch.setattr(plan_module, "DEFAULT_THROUGHPUT", ws["tmp"] / "no-table.json")
    code, out, err = readme_plan(bench_cli, ws)
    assert code == 0, out + err
    assert "72 cells" in out and "no throughput measured; GPU-hours unknown" in out
    for protocol in README_PROTOCOLS.split(","):
        assert protocol in out
    assert "pretrain freepoint (paper, scannet)" in out and "random init of the fine-tuning model" in out
    assert "split s3dis-10pct-masks.json is not frozen yet" in out
    assert "can not run" not in out
    # nothing was prepared, trained or frozen
    assert not any((ws["tmp"] / d).exists() for d in ("cache", "runs", "results", "ckpt"))
    assert not (ws["protocols"] / "splits" / "s3dis-10pct-masks.json").exists()


def test_plan_rows_and_shared_pretrainings(ws):
    opts = RunOptions(root=ws["root"], protocols_dir=ws["protocols"], pretrain_root=ws["scannet"],
                      cache=ws["tmp"] / "cache", runs=ws["tmp"] / "runs", results=ws["tmp"] / "results")
    tasks = expand(README_METHODS.split(","), README_PROTOCOLS.split(","), [0, 1, 2])
    plan = make_plan(tasks, opts, machine=GPU)
    assert plan.ok and len(plan.rows) == 72
    # one ScanNet pretraining per method (not scratch), shared by every protocol and seed
    assert sorted(p.method for p in plan.pretrainings) == ["csc", "depthcontrast", "freepoint", "pointcontrast",
                                                           "supervised"]
    fp = next(p for p in plan.pretrainings if p.method == "freepoint")
    assert (fp.preset, fp.dataset, fp.scenes, fp.epochs, fp.batch_size) == ("paper", "scannet", 3, 110, 5)
    assert fp.steps == 110 and not fp.exists  # ceil(3 / 5) = 1 step per epoch; the val scan is not pretrained on
    row = next(r for r in plan.rows if r.task.protocol == "s3dis-10pct-scenes" and r.task.method == "csc")
    # the committed 10% split keeps 20 of the 204 training rooms; paper fine-tuning: 90k steps (supplement A.2),
    # batch 4, whatever the rooms
    assert row.steps == 90_000 and row.finetune == "90000 steps × batch 4 over 20 scenes"
    masks = next(r for r in plan.rows if r.task.protocol == "s3dis-10pct-masks")
    assert masks.finetune == "90000 steps × batch 4 over ≤ 204 scenes"  # not frozen: every training room, at most
    # a finished cell is skipped: nothing to plan
    done = opts.results / "s3dis-10pct-scenes" / "csc" / "seed-0" / "result.json"
    done.parent.mkdir(parents=True)
    done.write_text("{}")
    again = make_plan(tasks, opts, machine=GPU)
    row = next(r for r in again.rows if r.task == Task("s3dis-10pct-scenes", "csc", 0))
    assert row.finished and row.steps == 0 and row.problems == [] and again.ok


def test_an_architecture_mismatch_stops_the_plan_in_one_line(bench_cli, ws, monkeypatch, wide):
    monkeypatch.setattr(plan_module, "detect_machine", lambda: GPU)
    code, out, err = readme_plan(bench_cli, ws, "--pretrain-preset", "cpu-small")
    assert code == 1
    assert "pointcontrast: pretraining preset cpu-small (--pretrain-preset) builds another backbone" in out
    assert "preset='small' here, '34C' for fine-tuning" in out and "can not run" in out


def test_what_this_machine_lacks_stops_the_plan(ws):
    opts = RunOptions(root=ws["root"], protocols_dir=ws["protocols"], pretrain_root=ws["scannet"])
    tasks = expand(["freepoint"], ["s3dis-10pct-scenes"], [0])
    problems = make_plan(tasks, opts, machine=CPU).rows[0].problems
    assert any("fine-tuning: preset paper asks for a GPU (accelerator gpu, precision 16-mixed)" in p for p in problems)
    assert any(p.startswith("freepoint pretraining: preset paper asks for a GPU") for p in problems)
    bare = Machine(cuda=True, bf16=False, backends=())
    problems = make_plan(tasks, replace(opts, overrides={"precision": "bf16-mixed"}),
                         machine=bare).rows[0].problems
    assert any("sparse backend spconv does not import here (importable: none)" in p for p in problems)
    assert any("fine-tuning: precision bf16-mixed needs a GPU with bf16" in p for p in problems)
    # on a SLURM login node the compute nodes are not checked
    elsewhere = Machine(cuda=False, bf16=False, backends=(), checked=False)
    assert make_plan(tasks, opts, machine=elsewhere).ok


def test_missing_data_splits_and_pretraining_roots_stop_their_cells(ws, tmp_path, release_rooms):
    no_area5 = s3dis_tree(tmp_path / "no-area5", [r for r in release_rooms if not r.startswith("Area_5/")])
    opts = RunOptions(root=no_area5, protocols_dir=ws["protocols"], pretrain_root=ws["scannet"])
    plan = make_plan(expand(["scratch"], ["s3dis-10pct-masks", "s3dis-10pct-scenes"], [0]), opts, machine=GPU)
    assert not plan.ok
    assert all(any("no scene of the" in p and "Area_5" in p for p in r.problems) for r in plan.rows)
    # the pinned rooms of a scenes protocol must be in the data (a synthetic copy has other names)
    few = s3dis_tree(tmp_path / "few", [f"Area_{a}/office_1" for a in range(1, 7)])
    row = make_plan(expand(["scratch"], ["s3dis-10pct-scenes"], [0]), replace(opts, root=few),
                    machine=GPU).rows[0]
    assert any("selected training scenes are not in the data" in p for p in row.problems)
    # ...and fewer evaluation rooms than the protocol expects is said, not refused
    row = make_plan(expand(["scratch"], ["s3dis-10pct-masks"], [0]), replace(opts, root=few),
                    machine=GPU).rows[0]
    assert row.problems == [] and any("1 evaluation scenes, the protocol expects 68" in n for n in row.notes)
    # a damaged pinned split, a missing data root, a missing pretraining root
    (ws["protocols"] / "splits" / "s3dis-20pct-scenes.json").write_text("{}")
    rows = make_plan(expand(["freepoint"], ["s3dis-20pct-scenes"], [0]),
                     replace(opts, root=ws["root"], pretrain_root=tmp_path / "nowhere"), machine=GPU).rows
    assert any("does not match the pinned" in p for p in rows[0].problems)
    assert any(p.startswith("pretraining data:") and "nowhere" in p for p in rows[0].problems)
    row = make_plan(expand(["scratch"], ["s3dis-10pct-masks"], [0]),
                    replace(opts, root=tmp_path / "absent"), machine=GPU).rows[0]
    assert any("absent" in p and "--root" in p for p in row.problems)


def test_a_given_checkpoint_that_saw_evaluation_scenes_is_a_problem(ws, tmp_path):
    from freepoint_bench.engine.checkpoints import save_model_checkpoint
    from freepoint_bench.engine.module import segmenter_config
    from freepoint_bench.engine.presets import get_preset
    from freepoint_bench.models.backbone import Res16UNet

    root = s3dis_tree(tmp_path / "synthetic", [f"Area_{a}/office_{a}" for a in range(1, 7)])
    shutil.copy(PROTOCOLS_DIR / "synthetic-s3dis-20pct-masks.toml", ws["protocols"])
    backbone = Res16UNet(segmenter_config(get_preset("cpu-small")).backbone)
    leaky = save_model_checkpoint(tmp_path / "leaky.ckpt", backbone, {
        "method": "supervised", "data": {"scenes": ["Area_1/office_1", "Area_5/office_5"]}})
    opts = RunOptions(root=root, protocols_dir=ws["protocols"], given={"supervised": [leaky]},
                      results=tmp_path / "results")  # its splits folder: none frozen yet
    row = make_plan(expand(["supervised"], ["synthetic-s3dis-20pct-masks"], [0]), opts, machine=CPU).rows[0]
    assert row.start == f"checkpoint {leaky}"
    assert len(row.problems) == 1 and "pretrained (supervised) on 1 of the protocol's evaluation scenes" in \
        row.problems[0]
    assert any("not frozen yet" in n for n in row.notes)  # frozen from the data at the first cell: no problem


def test_gpu_hours_are_steps_times_step_seconds(ws, tmp_path):
    table = {"device": "test GPU", "measured": "2025-01-01", "rows": [
        {"stage": "pretrain", "method": "freepoint", "preset": "paper", "precision": "16-mixed", "step_s": 2.0,
         "samples_per_s": 2.5, "peak_mem_gb": 30.0},
        {"stage": "finetune", "method": None, "preset": "paper", "precision": "16-mixed", "step_s": 0.5},
        {"stage": "finetune", "method": "csc", "preset": "paper", "precision": "16-mixed", "step_s": 0.75}]}
    path = tmp_path / "throughput.json"
    path.write_text(json.dumps(table))
    throughput = load_throughput(path)
    opts = RunOptions(root=ws["root"], protocols_dir=ws["protocols"], pretrain_root=ws["scannet"])
    plan = make_plan(expand(["freepoint", "csc"], ["s3dis-10pct-scenes"], [0]), opts, machine=GPU,
                     throughput=throughput)
    csc, freepoint = plan.rows
    # by hand: fine-tuning the paper preset's 90k steps
    assert freepoint.gpu_hours == pytest.approx(90_000 * 0.5 / 3600)  # the method-less finetune row
    assert csc.gpu_hours == pytest.approx(90_000 * 0.75 / 3600)  # its own row wins
    # FreePoint pretraining: (100 + 10) epochs × ceil(3 scans / batch 5) = 110 steps of 2.0 s; csc's: unmeasured
    pre = {p.method: p for p in plan.pretrainings}
    assert pre["freepoint"].gpu_hours == pytest.approx(110 * 2.0 / 3600) and pre["csc"].gpu_hours is None
    total, unknown = plan.total_gpu_hours()
    assert total == pytest.approx((90_000 * 0.5 + 90_000 * 0.75 + 110 * 2.0) / 3600) and unknown == 1


def test_a_probe_cell_is_timed_by_its_own_task_row_or_not_at_all(ws, tmp_path):
    """A linear probe's step (no decoder, no backbone gradient) is not a fine-tuning step: a semantic cell takes the
    row of its task, and with none its GPU-hours are unknown rather than insseg's."""
    shutil.copy(PROTOCOLS_DIR / "s3dis-10pct-scenes-semseg.toml", ws["protocols"])
    finetune = {"stage": "finetune", "method": None, "preset": "paper", "precision": "16-mixed"}
    rows = [{**finetune, "step_s": 0.5}, {**finetune, "task": "semseg", "step_s": 0.2}]
    path = tmp_path / "throughput.json"
    opts = RunOptions(root=ws["root"], protocols_dir=ws["protocols"], pretrain_root=ws["scannet"])
    cells = expand(["scratch"], ["s3dis-10pct-scenes", "s3dis-10pct-scenes-semseg"], [0])
    for table_rows, semseg_step in ((rows, 0.2), (rows[:1], None)):
        path.write_text(json.dumps({"device": "test GPU", "measured": "2025-01-01", "rows": table_rows}))
        plan = make_plan(cells, opts, machine=GPU, throughput=load_throughput(path))
        insseg, semseg = sorted(plan.rows, key=lambda r: r.task.protocol)
        assert insseg.steps == 90_000  # the paper preset's 90k steps
        # the rung's own recipe (tests/harness/test_probe_recipes.py): Pointcept's 3000 epochs over its 20 rooms,
        # floor(20 x 30 / 24) x 100 = 2,500 steps of 24
        assert semseg.steps == 2_500
        assert insseg.gpu_hours == pytest.approx(90_000 * 0.5 / 3600)
        assert semseg.finetune.startswith("semseg: 2500 steps × batch 24") and "semseg" not in insseg.finetune
        if semseg_step is None:
            assert semseg.gpu_hours is None and plan.total_gpu_hours()[1] == 1
        else:
            assert semseg.gpu_hours == pytest.approx(2_500 * semseg_step / 3600)
    # a row measured at another batch does not time the rung's batch-24 steps (the paper preset's rows are at 4)
    at = {**finetune, "task": "semseg", "step_s": 0.2}
    for batch, timed in ((4, False), (24, True)):
        path.write_text(json.dumps({"device": "test GPU", "measured": "2025-01-01",
                                    "rows": [{**finetune, "batch": 4, "step_s": 0.5}, {**at, "batch": batch}]}))
        plan = make_plan(cells, opts, machine=GPU, throughput=load_throughput(path))
        insseg, semseg = sorted(plan.rows, key=lambda r: r.task.protocol)
        assert insseg.gpu_hours == pytest.approx(90_000 * 0.5 / 3600)
        assert (semseg.gpu_hours is not None) == timed


def test_a_malformed_throughput_table_is_refused(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"rows": [{"stage": "train", "preset": "paper", "precision": "32", "step_s": 1}]}))
    with pytest.raises(ConfigError, match="row 0 needs stage"):
        load_throughput(path)
    path.write_text("{")
    with pytest.raises(ConfigError, match="not a readable throughput table"):
        load_throughput(path)


def test_the_plan_reads_the_default_table_and_checks_only_this_machine(tmp_path, monkeypatch):
    monkeypatch.setattr(plan_module, "detect_machine", lambda: GPU)
    assert plan_machine() == GPU and plan_machine(elsewhere=True) == replace(GPU, checked=False)
    monkeypatch.setattr(plan_module, "DEFAULT_THROUGHPUT", tmp_path / "throughput.json")
    assert read_throughput() is None  # the device check has not written one
    (tmp_path / "throughput.json").write_text(json.dumps({"device": "default", "rows": []}))
    (tmp_path / "other.json").write_text(json.dumps({"device": "other", "rows": []}))
    assert read_throughput().device == "default" and read_throughput(tmp_path / "other.json").device == "other"


def test_plan_prints_the_estimate(bench_cli, ws, monkeypatch, tmp_path, wide):
    monkeypatch.setattr(plan_module, "detect_machine", lambda: GPU)
    path = tmp_path / "throughput.json"
    path.write_text(json.dumps({"device": "test GPU", "measured": "2025-01-01", "rows": [
        {"stage": "finetune", "method": None, "preset": "paper", "precision": "16-mixed", "step_s": 1.2}]}))
    code, out, err = bench_cli("run", "--methods", "scratch", "--protocols", "s3dis-10pct-scenes", *where(ws),
                               "--plan", "--throughput", path)
    assert code == 0, out + err
    assert "test GPU" in out and f"{90_000 * 1.2 / 3600:.1f} GPU-hours" in out


def plan_text(capsys, *args) -> tuple[int, str]:
    """Returns (exit code, stdout) of `bench.py run ... --plan` as printed (bench_cli collapses whitespace)."""
    from freepoint_bench.cli import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    return int(exc.value.code or 0), capsys.readouterr().out


def recipe_block(out: str, protocol: str) -> dict[str, dict[str, str]]:
    """Returns the printed recipe block naming `protocol`: what → its {field: value}."""
    block: dict[str, dict[str, str]] = {}
    what = ""
    for line in recipe_lines(out, protocol):
        if not line.startswith("   "):  # else a long line's continuation
            what, _, line = line.strip().partition(" ")
        block.setdefault(what, {}).update(fields(line))
    return block


def recipe_lines(out: str, protocol: str) -> list[str]:
    """Returns the printed lines of the recipe block naming `protocol`, after its head."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("recipe r") and protocol in line)
    end = next(i for i in range(start + 1, len(lines) + 1)
               if i == len(lines) or not lines[i].startswith("  ") or "=" not in lines[i])  # a table title is centred
    return lines[start + 1:end]


def fields(text: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in text.split() if "=" in word)


def said(value) -> str:
    """A config value as --set writes it (true / false, none, [a,b] for a tuple)."""
    if isinstance(value, tuple):
        return "[" + ",".join(said(v) for v in value) + "]"
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def check_recipe_block(block: dict[str, dict[str, str]], protocol: str, protocols_dir: Path) -> None:
    """Asserts that a printed recipe holds the values of `protocol`'s configs, read from them."""
    from freepoint_bench.harness.finetune import finetune_config
    from freepoint_bench.harness.protocol import load_protocol

    spec = load_protocol(protocol, protocols_dir)
    ft = finetune_config(spec.preset, **spec.overrides)
    assert block["task"] == {"task": spec.task, "preset": spec.preset}
    counted = "epochs" if ft.max_steps is None else "max_steps"
    assert block["budget"][counted] == said(getattr(ft, counted)) and len(block["budget"]) == 6
    for key in ("batch_size", "lr", "weight_decay", "schedule", "onecycle_pct_start"):
        assert block["budget"][key] == said(getattr(ft.train, key))
    inputs = ("color_mean", "color_std") if ft.train.input_features == "rgb" else ("use_xyz_features",)
    for key in ("backbone", "num_queries", "attention_levels", "attention_sample_sizes", "attention_mask_rule",
                "voxel_size_m", "input_features", *inputs):
        assert block["model"][key] == said(getattr(ft.train, key))
    crop = ("crop", "crop_length_m", "crop_min_points") if ft.train.crop == "cuboid" else ()
    assert block["crop"] == {k: said(getattr(ft.train, k)) for k in (*crop, "max_points", "max_loss_points")}
    augment = ft.train.augment  # every field, those its record leaves out at their defaults too
    assert block["augment"] == {k: said(getattr(augment, k)) for k in type(augment).model_fields}
    for key in ("mode", "topk", "mask_threshold", "score_threshold", "min_points"):
        assert block["inference"][key] == said(getattr(ft.inference, key))
    assert block["pretraining"] == {"pretrain_preset": spec.pretrain_preset, "pretrain_dataset": spec.pretrain_dataset}


def test_the_plan_prints_each_recipe_once_with_the_configs_values(capsys, ws, tmp_path, monkeypatch, wide):
    """Issue 29's evidence: before a GPU hour, the plan says each cell's budget, crop, augmentations, inference and
    pretraining dataset. The README example's recipe is checked against the configs themselves (the paper
    fine-tuning preset, the protocols' pretraining recipe); a cpu-small stand-in's is printed with its own values."""
    monkeypatch.setattr(plan_module, "detect_machine", lambda: GPU)
    code, out = plan_text(capsys, "run", "--methods", README_METHODS, "--protocols", README_PROTOCOLS, "--seeds",
                          "0", "1", "2", *where(ws), "--pretrain-dataset", "scannet", "--pretrain-root", ws["scannet"],
                          "--plan")
    assert code == 0, out
    heads = [line for line in out.splitlines() if line.startswith("recipe r")]
    assert heads == ["recipe r1: " + ", ".join(sorted(README_PROTOCOLS.split(",")))]  # one recipe, said once
    assert out.count(" r1 ") == 72  # every cell names it
    paper = recipe_block(out, "s3dis-10pct-masks")
    check_recipe_block(paper, "s3dis-10pct-masks", ws["protocols"])
    # Mask3D's S3DIS inference: DBSCAN on the masks; ScanNet pretraining; the crop is said
    assert paper["inference"]["mode"] == "mask3d" and "dbscan_eps" in paper["inference"]
    assert paper["crop"]["crop"] == "cuboid" and paper["model"]["input_features"] == "rgb"  # Mask3D's S3DIS crop, input
    assert max(len(line) for line in recipe_lines(out, "s3dis-10pct-masks")) <= 120  # wrapped between fields

    synthetic = s3dis_tree(tmp_path / "synthetic", [f"Area_{a}/office_{a}" for a in range(1, 7)])
    shutil.copy(PROTOCOLS_DIR / "synthetic-s3dis-50pct-scenes.toml", ws["protocols"])
    args = ["--root", synthetic, "--protocols-dir", ws["protocols"], "--results", tmp_path / "results"]
    code, out = plan_text(capsys, "run", "--methods", "scratch", "--protocols", "synthetic-s3dis-50pct-scenes",
                          *args, "--plan")
    small = recipe_block(out, "synthetic-s3dis-50pct-scenes")
    check_recipe_block(small, "synthetic-s3dis-50pct-scenes", ws["protocols"])
    for what, key in (("budget", "batch_size"), ("budget", "lr"), ("crop", "max_points"), ("inference", "mode"),
                      ("model", "backbone"), ("model", "voxel_size_m"), ("pretraining", "pretrain_dataset")):
        assert paper[what][key] != small[what][key], (what, key)
    assert "max_steps" in paper["budget"] and "epochs" in small["budget"]  # 90k steps; the stand-in's epochs
    assert "dbscan_eps" not in small["inference"]  # query inference reads no DBSCAN field


def test_a_semantic_protocol_shows_no_inference_and_an_override_is_its_own_recipe(ws):
    shutil.copy(PROTOCOLS_DIR / "s3dis-10pct-scenes-semseg.toml", ws["protocols"])
    opts = RunOptions(root=ws["root"], protocols_dir=ws["protocols"], pretrain_root=ws["scannet"])
    cells = expand(["scratch"], ["s3dis-10pct-scenes", "s3dis-10pct-scenes-semseg"], [0])
    plan = make_plan(cells, opts, machine=GPU)
    recipes = {protocols[0]: dict(summary.lines) for summary, protocols in plan.recipes()}
    assert "inference" in recipes["s3dis-10pct-scenes"] and "inference" not in recipes["s3dis-10pct-scenes-semseg"]
    assert "num_queries=" not in recipes["s3dis-10pct-scenes-semseg"]["model"]
    # a --set changes the recipe it shows
    changed = make_plan(cells[:1], replace(opts, overrides={"max_points": None, "lr": 0.5}), machine=GPU)
    (summary, _), = changed.recipes()
    lines = dict(summary.lines)
    assert fields(lines["crop"])["max_points"] == "none" and "random point" not in lines["crop"]
    assert fields(lines["budget"])["lr"] == "0.5" and summary not in recipes.values()


def test_the_recipe_says_mask3ds_crop_and_colour_input_when_set(ws):
    opts = RunOptions(root=ws["root"], protocols_dir=ws["protocols"], pretrain_root=ws["scannet"],
                      overrides={"crop": "cuboid", "max_points": None, "input_features": "rgb"})
    plan = make_plan(expand(["scratch"], ["s3dis-10pct-scenes"], [0]), opts, machine=GPU)
    (summary, _), = plan.recipes()
    lines = dict(summary.lines)
    crop, model = fields(lines["crop"]), fields(lines["model"])
    assert (crop["crop"], crop["crop_length_m"], crop["crop_min_points"], crop["max_points"]) == \
        ("cuboid", "6.0", "20000", "none") and "random point" not in lines["crop"]
    assert model["input_features"] == "rgb" and "use_xyz_features" not in model  # not read for rgb
    assert model["color_mean"] == "[0.47793125906962,0.4303257521323044,0.3749598901421883]"  # Mask3D's ScanNet
