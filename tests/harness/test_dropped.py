"""A masks protocol's dropped masks (issue 29 item 5): ignored by default, plain background with
``dropped = "background"``; the protocol hash, the result record and the report say which, and the report never
compares the two."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from freepoint_bench.data.scene import Scene
from freepoint_bench.engine.data import Targets, make_sample
from freepoint_bench.engine.presets import get_preset
from freepoint_bench.errors import ConfigError
from freepoint_bench.harness.finetune import ProtocolTargets
from freepoint_bench.harness.protocol import PROTOCOLS_DIR, EvalRules, load_protocol
from freepoint_bench.report import build_leaderboard, build_report, load_results, to_terminal
from freepoint_bench.report.render import to_markdown
from freepoint_bench.results import ResultRecord, read_result, write_result

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))
from report_fixtures import write_store  # noqa: E402

PRESET = get_preset("cpu-small", max_points=None, max_loss_points=None, voxel_size_m=0.1)
ROOM = "Area_1/room"
KEPT = {ROOM: ["table_1", "chair_2"]}  # chair_1 (points 300..599) is dropped
P10 = "s3dis-10pct-masks"
# s3dis-10pct-masks' protocol hash before the field existed (computed at 75c5cdb): results at the default keep it
P10_HASH = "0b0562b3f585b074599f810939e15ee066b9a0a9b3ab896487efdf5d391a7333"


def _scene() -> Scene:
    """Three boxes of 300 points side by side: table_1 (S3DIS id 7), chair_1 (8), chair_2 (8)."""
    rng = np.random.default_rng(0)
    xyz = np.concatenate([rng.random((300, 3), dtype=np.float32) * 0.8 + np.float32([1.2 * i, 0, 0])
                          for i in range(3)])
    return Scene(name=ROOM, xyz=xyz, rgb=rng.random((900, 3), dtype=np.float32),
                 semantic=np.repeat(np.array([7, 8, 8]), 300), instance=np.repeat(np.arange(3), 300),
                 meta={"dataset": "s3dis", "instance_names": ["table_1", "chair_1", "chair_2"]})


def _sample(targets: Targets) -> dict:
    return make_sample(_scene(), PRESET, targets, rng=np.random.default_rng(0), train=False)


# ---------------------------------------------------------------------------------------------- targets


def test_ignored_dropped_points_are_no_loss_points_and_in_no_mask():
    scene = _scene()
    t = ProtocolTargets(EvalRules(classes="s3dis"), KEPT)(scene)
    dropped = np.arange(900) // 300 == 1
    assert (t.ignore == dropped).all() and (t.instance[dropped] == -1).all()
    s = _sample(t)
    # the loss points are the 600 points of the kept instances (train=False keeps every point, in order)
    xyz = scene.xyz - scene.xyz.min(axis=0)
    assert len(s["loss_target"]) == 600 and np.allclose(s["loss_xyz"], xyz[~dropped])
    assert (s["loss_target"] >= 0).all()
    assert len(s["masks"]) == 2 and not s["masks"][:, s["inverse"][dropped]].any()


def test_background_dropped_points_are_loss_points_of_no_target_and_in_no_mask():
    scene = _scene()
    t = ProtocolTargets(EvalRules(classes="s3dis"), KEPT, dropped="background")(scene)
    dropped = np.arange(900) // 300 == 1
    assert not t.ignore.any() and (t.instance[dropped] == -1).all() and (t.instance[~dropped] >= 0).all()
    s = _sample(t)
    assert len(s["loss_target"]) == 900  # every point is a loss point
    assert (s["loss_target"][dropped] == -1).all() and (s["loss_target"][~dropped] >= 0).all()
    assert len(s["masks"]) == 2 and not s["masks"][:, s["inverse"][dropped]].any()
    # the oracle: the same room with chair_1 unlabelled (points of no instance), nothing ignored
    plain = Targets(instance=np.where(dropped, -1, scene.instance), semantic=scene.semantic)
    want = _sample(plain)
    for key in ("masks", "classes", "loss_inverse", "loss_xyz", "loss_target"):
        assert np.array_equal(s[key], want[key]), key


def test_kept_and_unselected_scenes_are_the_same_under_both():
    scene = _scene()
    for kept in (None, {ROOM: ["table_1", "chair_1", "chair_2"]}):
        a, b = (ProtocolTargets(EvalRules(classes="s3dis"), kept, dropped=d)(scene) for d in ("ignore", "background"))
        assert (a.instance == b.instance).all() and not a.ignore.any() and not b.ignore.any()
    with pytest.raises(ConfigError, match="dropped 'negative': choose one of ignore, background"):
        ProtocolTargets(EvalRules(classes="s3dis"), KEPT, dropped="negative")


# ---------------------------------------------------------------------------------------------- the protocol


def _variant(folder: Path, name: str, source: str = P10, **fields: str) -> None:
    """Writes protocols/<name>.toml: the shipped `source` with `fields` set (TOML strings) before its [eval]."""
    text = (PROTOCOLS_DIR / f"{source}.toml").read_text()
    extra = "".join(f"{k} = {v}\n" for k, v in fields.items())
    (folder / f"{name}.toml").write_text(text.replace("\n[eval]", f"\n{extra}\n[eval]"))


def test_the_protocol_hash_stays_at_the_default_and_changes_with_background(tmp_path):
    shipped = load_protocol(P10)
    assert shipped.dropped == "ignore" and shipped.content_hash() == P10_HASH
    _variant(tmp_path, P10, dropped='"ignore"')  # said explicitly: the same protocol
    assert load_protocol(P10, tmp_path).content_hash() == P10_HASH
    _variant(tmp_path, P10, dropped='"background"')
    background = load_protocol(P10, tmp_path)
    assert background.dropped == "background" and background.content_hash() != P10_HASH
    # what a user runs: a copy under its own name training on the original's split
    _variant(tmp_path, f"{P10}-background", dropped='"background"', split_protocol=f'"{P10}"')
    mine = load_protocol(f"{P10}-background", tmp_path)
    assert mine.dropped == "background" and mine.split_owner == P10


@pytest.mark.parametrize(("source", "fields", "message"), [
    ("s3dis-10pct-scenes", {"dropped": '"background"'}, "use it with unit 'masks'"),
    (P10, {"dropped": '"background"', "task": '"semseg"'}, "task insseg or insseg-frozen"),
    (P10, {"dropped": '"negative"'}, "dropped"),
])
def test_background_is_refused_where_no_mask_is_dropped(tmp_path, source, fields, message):
    _variant(tmp_path, "bad", source, **fields)
    with pytest.raises(ConfigError, match=message) as err:
        load_protocol("bad", tmp_path)
    assert "\n" not in str(err.value)


def test_show_and_the_plan_name_the_field(bench_cli, tmp_path):
    from freepoint_bench.harness.plan import summarise_recipe
    from freepoint_bench.harness.run import RunOptions, recipe

    _variant(tmp_path, f"{P10}-background", dropped='"background"', split_protocol=f'"{P10}"')
    code, out, err = bench_cli("protocols", "show", f"{P10}-background", "--protocols-dir", tmp_path)
    assert code == 0, err
    assert '"dropped": "background"' in out
    code, out, err = bench_cli("protocols", "show", P10)
    assert code == 0 and '"dropped": "ignore"' in out and P10_HASH in out
    for name, said in ((f"{P10}-background", "dropped=background"), (P10, None)):
        spec = load_protocol(name, tmp_path if said else None)
        task = dict(summarise_recipe(spec, recipe(spec, RunOptions()), spec.preset).lines)["task"]
        assert (said in task.split()) if said else "dropped" not in task, task


# ---------------------------------------------------------------------------------------------- the record


def _record(dropped: str = "ignore") -> ResultRecord:
    return ResultRecord(protocol=P10, protocol_hash="a" * 64, split_sha256="b" * 64, method="scratch", seed=0,
                        metrics={"ap": 0.1, "ap50": 0.2, "ap25": 0.3, "per_class": {}}, unit="masks",
                        config={"epochs": 3, "train": {"lr": 0.1}}, dropped=dropped)


def test_the_record_writes_dropped_only_off_its_default_and_it_splits_the_recipe(tmp_path):
    plain, background = _record(), _record("background")
    assert "dropped" not in plain.to_json() and background.to_json()["dropped"] == "background"
    path = write_result(tmp_path / "bg.json", background)
    assert json.loads(path.read_text())["dropped"] == "background" and read_result(path).dropped == "background"
    assert read_result(write_result(tmp_path / "plain.json", plain)).dropped == "ignore"
    assert "dropped" not in plain.recipe and background.recipe == {**plain.recipe, "dropped": "background"}
    assert plain.recipe_hash != background.recipe_hash


# ---------------------------------------------------------------------------------------------- the report


def _set_dropped(root: Path, protocol: str, methods: tuple[str, ...], seeds=(0, 1, 2)) -> None:
    for method in methods:
        for seed in seeds:
            path = root / protocol / method / f"seed-{seed}" / "result.json"
            if path.is_file():
                doc = json.loads(path.read_text())
                path.write_text(json.dumps({**doc, "dropped": "background"}))


def test_the_report_refuses_to_compare_ignore_with_background_and_names_the_field(tmp_path):
    root = write_store(tmp_path / "results")
    _set_dropped(root, P10, ("freepoint",))
    board = build_leaderboard(load_results(root))
    fp, scratch = board.entry(P10, "freepoint"), board.entry(P10, "scratch")
    assert fp.status == "ok" and fp.not_comparable == "dropped background vs scratch's ignore"
    assert not scratch.not_comparable and all(s.paired is None for s in fp.metrics.values())  # no Δ
    assert "freepoint" not in board.best.get((P10, "ap"), set())
    notes = "\n".join(board.notes)
    assert f"{P10}/freepoint: not comparable (another fine-tuning recipe): dropped background vs scratch's ignore" \
        in notes
    assert f"{P10}: dropped masks: background for freepoint; ignore for " in notes
    md = to_markdown(build_report(board))
    assert "not comparable" in md and "dropped background vs scratch's ignore" in md
    # seeds of one method that differ in it are never averaged
    _set_dropped(root, P10, ("scratch",), seeds=(1,))
    conflict = build_leaderboard(load_results(root)).entry(P10, "scratch")
    assert conflict.status == "conflict" and "dropped ignore vs background" in conflict.reason


def test_a_table_of_background_cells_says_so(tmp_path):
    root = write_store(tmp_path / "results")
    _set_dropped(root, P10, ("scratch", "freepoint", "pointcontrast", "csc"))
    board = build_leaderboard(load_results(root))
    assert not any(board.entry(P10, m).not_comparable for m in board.methods)  # like with like
    assert f"{P10}: dropped masks: background (" in "\n".join(board.notes)
    report = build_report(board)
    assert f"- {P10}: dropped masks: background" in to_markdown(report)
    console = Console(file=io.StringIO(), width=200)
    console.print(to_terminal(report))
    assert "labels, dropped masks: background)" in console.file.getvalue()
    assert "s3dis-20pct-masks: dropped masks" not in "\n".join(board.notes)  # the other protocol's stay ignored


# ---------------------------------------------------------------------------------------------- end to end

FT = ["--set", "epochs=1", "--set", "batch_size=5", "--set", "max_points=null", "--set", "num_queries=12"]
BASE = "synthetic-s3dis-20pct-masks"


def test_a_background_copy_of_a_protocol_runs_on_its_split_and_records_it(bench_cli, tmp_path):
    from freepoint_bench.data.synthetic import SyntheticConfig, write_synthetic_s3dis

    root = tmp_path / "s3dis"
    write_synthetic_s3dis(root, 12, seed=1, config=SyntheticConfig(num_points=1500))
    folder = tmp_path / "protocols"
    (folder / "splits").mkdir(parents=True)
    shutil.copy(PROTOCOLS_DIR / f"{BASE}.toml", folder)
    _variant(folder, f"{BASE}-background", BASE, dropped='"background"', split_protocol=f'"{BASE}"')
    results = tmp_path / "results"
    code, _, err = bench_cli("run", "--methods", "scratch", "--protocols", f"{BASE},{BASE}-background", "--seeds", "0",
                             "--root", root, "--protocols-dir", folder, "--results", results, "--checkpoints",
                             tmp_path / "ckpt", "--runs", tmp_path / "runs", "--cache", tmp_path / "cache", *FT)
    assert code == 0, err
    cells = [results / p / "scratch" / "seed-0" for p in (BASE, f"{BASE}-background")]
    plain, background = (read_result(c / "result.json") for c in cells)
    assert "dropped" not in json.loads((cells[0] / "result.json").read_text())
    assert background.dropped == "background" and plain.dropped == "ignore"
    assert plain.split_sha256 == background.split_sha256 and plain.num_train_masks == background.num_train_masks
    assert plain.protocol_hash == load_protocol(BASE).content_hash() != background.protocol_hash
    # the same seed, scenes and masks: the losses differ only by what the dropped masks' points became
    losses = [json.loads((c / "work" / "fold-0" / "fold.json").read_text())["losses"] for c in cells]
    assert losses[0] != losses[1]
    board = build_leaderboard(load_results(results))
    assert f"{BASE}-background: dropped masks: background (" in "\n".join(board.notes)
    assert not any(n.startswith(f"{BASE}: dropped") for n in board.notes)
