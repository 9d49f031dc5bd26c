"""Damaged files: every stored artefact, truncated, bit-flipped, zeroed in a block or with garbage appended, is
either refused with the project's one-line error naming the file, recomputed, or (when the damage hit bytes that
carry nothing) read back exactly as written. Never loaded as if valid with other content."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from freepoint_bench.errors import CheckpointError, ConfigError, DataError, FreePointError

from .conftest import REPO, corruptions, private_protocols, record_figures

N = 24  # damaged copies per file kind (6 of each of the four kinds of damage)


def tally(outcomes: dict[str, int], key: str) -> None:
    outcomes[key] = outcomes.get(key, 0) + 1


def check_damage(name: str, original: Path, load, same, error: type[FreePointError], count: int = N,
                 seed: int = 0) -> dict[str, int]:
    """Damages `original` `count` times (restoring it after each); load() must raise `error` naming the file or
    return what same(value) accepts as the undamaged content. Returns the outcome counts."""
    data = original.read_bytes()
    outcomes: dict[str, int] = {}
    try:
        for kind, bad in corruptions(data, count, seed):
            original.write_bytes(bad)
            try:
                value = load()
            except error as e:
                text = str(e)
                assert "\n" not in text and str(original.name) in text, text
                tally(outcomes, f"{kind}: refused")
                continue
            assert same(value), f"{name}: {kind} damage loaded as valid with other content"
            tally(outcomes, f"{kind}: unchanged content")
    finally:
        original.write_bytes(data)
    record_figures(f"corruption:{name}", {"cases": count, "outcomes": outcomes})
    return outcomes


def test_scene_cache_file(prepared, tmp_path):
    from freepoint_bench.data.store import SceneStore

    cache = tmp_path / "cache"
    shutil.copytree(prepared[0], cache)
    store = SceneStore(next(cache.iterdir()))
    name = store.names()[0]
    want = store.load(name)

    def same(scene) -> bool:
        return all(np.array_equal(getattr(scene, k), getattr(want, k)) for k in ("xyz", "rgb", "semantic", "instance"))

    out = check_damage("scene cache .npz", store.path_of(name), lambda: store.load(name), same, DataError)
    assert sum(v for k, v in out.items() if k.endswith("refused")) >= N // 2
    # the labels-only read (evaluation) refuses the same damage
    check_damage("scene cache .npz (labels only)", store.path_of(name), lambda: store.load_labels(name),
                 lambda sem_inst: np.array_equal(sem_inst[0], want.semantic), DataError, seed=1)


def test_scene_cache_index(prepared, tmp_path):
    from freepoint_bench.data.store import SceneStore

    cache = tmp_path / "cache"
    shutil.copytree(prepared[0], cache)
    root = next(cache.iterdir())

    def read() -> dict:  # a fresh store each time: the index is read once per store
        store = SceneStore(root)
        return {"dataset": store.dataset, "root": store.data_root, **{n: store.info(n) for n in store.names()}}

    want = read()
    check_damage("scene cache index.json", root / "index.json", read, lambda v: v == want, DataError)


@pytest.fixture(scope="module")
def label_dir(prepared, tmp_path_factory):
    from freepoint_bench.freepoint.config import PseudoLabelConfig
    from freepoint_bench.freepoint.pipeline import run_pseudo_labels

    _, store, names = prepared
    out = tmp_path_factory.mktemp("labels")
    run_pseudo_labels(store, names[:1], PseudoLabelConfig(), None, out)
    return out, store, names[0]


def test_pseudo_label_file_refused_or_recomputed(label_dir):
    from freepoint_bench.freepoint.config import PseudoLabelConfig
    from freepoint_bench.freepoint.pipeline import label_path, load_pseudo_labels, run_pseudo_labels

    out, store, name = label_dir
    config = PseudoLabelConfig()
    path = label_path(out, name, config.sigmas[0])
    want = load_pseudo_labels(out, name, config.sigmas[0])
    good = path.read_bytes()
    check_damage("pseudo-label .npz", path, lambda: load_pseudo_labels(out, name, config.sigmas[0]),
                 lambda labels: np.array_equal(labels, want), DataError)
    # the pipeline sees damage as "not cached" and recomputes the scene, bit for bit
    with np.load(path) as z:
        members = {k: z[k] for k in z.files}
    recomputed = 0
    for kind, bad in corruptions(good, 8, seed=2):
        path.write_bytes(bad)
        summary = run_pseudo_labels(store, [name], config, None, out)
        recomputed += summary["computed"]
        # recomputed (bit for bit), or kept because every member still reads back as written
        with np.load(path) as z:
            assert z.files == list(members) and all(np.array_equal(z[k], v) for k, v in members.items()), kind
    record_figures("corruption:pseudo-label recompute", {"cases": 8, "recomputed": recomputed})
    assert recomputed >= 4


@pytest.fixture(scope="module")
def backbone_ckpt(tmp_path_factory):
    from freepoint_bench.engine.checkpoints import register_checkpoint, save_model_checkpoint
    from freepoint_bench.engine.module import segmenter_config
    from freepoint_bench.engine.presets import get_preset
    from freepoint_bench.models.backbone import Res16UNet

    folder = tmp_path_factory.mktemp("ckpt")
    paths = []
    for i in range(2):
        torch.manual_seed(i)
        model = Res16UNet(segmenter_config(get_preset("cpu-small")).backbone)
        path = folder / f"run{i}-backbone.ckpt"
        meta = {"method": "scratch", "id": f"run{i}", "data": {"dataset": "s3dis", "scenes": ["Area_1/office_1"]}}
        save_model_checkpoint(path, model, meta)
        register_checkpoint(folder / "index.json", f"run{i}", meta, {"backbone": path})
        paths.append(path)
    return folder, paths


def test_checkpoint_refused(backbone_ckpt):
    from freepoint_bench.engine.checkpoints import load_model
    from freepoint_bench.models.checkpoint import load_checkpoint

    _, (path, _) = backbone_ckpt
    state, meta = load_checkpoint(path)

    def same(loaded) -> bool:
        s, m = loaded
        return m == meta and s.keys() == state.keys() and all(torch.equal(s[k], state[k]) for k in state)

    out = check_damage("backbone .ckpt", path, lambda: load_checkpoint(path), same, CheckpointError)
    # every bit flip in the weights is caught by the integrity record (torch's zip checks no CRC)
    assert out.get("flip: refused", 0) + out.get("flip: unchanged content", 0) == N // 4
    check_damage("backbone .ckpt via load_model", path, lambda: load_model(path, part="backbone")[1],
                 lambda m: m == meta, CheckpointError, count=8, seed=3)


def test_checkpoint_integrity_catches_a_changed_weight(backbone_ckpt, tmp_path):
    """A valid torch file whose tensor changed after saving (same bytes elsewhere) is refused."""
    from freepoint_bench.models.checkpoint import load_checkpoint

    _, (path, _) = backbone_ckpt
    blob = torch.load(path, weights_only=True)
    key = sorted(blob["state_dict"])[0]
    blob["state_dict"][key].view(-1)[0] += 1e-3
    torch.save(blob, tmp_path / "edited.ckpt")
    with pytest.raises(CheckpointError, match="weights do not match"):
        load_checkpoint(tmp_path / "edited.ckpt")
    blob = torch.load(path, weights_only=True)
    blob["metadata"]["data"]["scenes"] = []  # e.g. hiding the pretraining scenes from the leakage guard
    torch.save(blob, tmp_path / "edited.ckpt")
    with pytest.raises(CheckpointError, match="metadata do not match"):
        load_checkpoint(tmp_path / "edited.ckpt")


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(_Payload.marker),))


def test_checkpoints_load_with_weights_only(tmp_path):
    """A checkpoint holding a pickled object that would run code is refused, and the code never runs."""
    from freepoint_bench.models.checkpoint import load_checkpoint

    _Payload.marker = str(tmp_path / "pwned")
    torch.save({"state_dict": {}, "metadata": {"x": _Payload()}}, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(tmp_path / "evil.ckpt")
    assert not (tmp_path / "pwned").exists()


def test_every_torch_load_passes_weights_only():
    """Every torch.load in the package and the baselines names weights_only (True, or the import command's explicit
    --trust-pickle opt-in), never leaves it to torch's default."""
    calls = []
    for path in sorted([*(REPO / "freepoint_bench").rglob("*.py"), *(REPO / "baselines").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("torch.load", "load") and any(
                    k.arg == "map_location" for k in node.keywords):
                calls.append((path.name, {k.arg: ast.unparse(k.value) for k in node.keywords}))
    assert calls
    for name, kw in calls:
        assert kw.get("weights_only") in ("True", "not trust_pickle"), (name, kw)


def test_checkpoints_index_refused_then_rebuilt(backbone_ckpt, tmp_path):
    from freepoint_bench.engine.checkpoints import read_index, register_checkpoint

    folder = tmp_path / "ckpt"
    shutil.copytree(backbone_ckpt[0], folder)
    index = folder / "index.json"
    want = read_index(index)
    assert set(want["checkpoints"]) == {"run0", "run1"}
    check_damage("checkpoints index.json", index, lambda: read_index(index), lambda v: v == want, CheckpointError)
    good = index.read_bytes()
    rebuilt = 0
    for kind, bad in corruptions(good, 8, seed=4):
        index.write_bytes(bad)
        try:
            read_index(index)
        except CheckpointError:
            rebuilt += 1
        # registering a new checkpoint repairs a damaged index from the checkpoints beside it
        register_checkpoint(index, "run2", {"method": "scratch"}, {"backbone": folder / "run0-backbone.ckpt"})
        after = read_index(index)["checkpoints"]
        assert set(after) == {"run0", "run1", "run2"}, kind
        assert after["run1"]["files"] == {"backbone": "run1-backbone.ckpt"}
        index.write_bytes(good)
    record_figures("corruption:checkpoints index rebuild", {"cases": 8, "rebuilt": rebuilt})


def test_split_file(prepared, tmp_path):
    from freepoint_bench.harness.protocol import freeze_split, load_protocol, load_split

    protocols = private_protocols(tmp_path / "protocols")
    spec = load_protocol("synthetic-s3dis-50pct-scenes", protocols)
    _, _, names = prepared
    path, _ = freeze_split(spec, names=names, protocols_dir=protocols)
    want = load_split(spec, protocols)
    check_damage("split .json", path, lambda: load_split(spec, protocols), lambda v: v == want, ConfigError)
    sidecar = Path(str(path) + ".sha256")
    check_damage("split .sha256 sidecar", sidecar, lambda: load_split(spec, protocols), lambda v: v == want,
                 ConfigError, count=8)


def _result_doc(tmp_path: Path) -> Path:
    from freepoint_bench.atomic import with_checksum, write_json

    doc = {"schema_version": 1, "protocol": "p", "protocol_hash": "0" * 64, "dataset": "s3dis", "unit": "masks",
           "fraction": 0.1, "split_sha256": "1" * 64, "method": "freepoint", "seed": 0,
           "checkpoint": {"path": "x.ckpt", "sha256": "2" * 64, "id": "freepoint-s3dis-x", "method": "freepoint"},
           "preset": "cpu-small", "config": {"epochs": 1},
           "metrics": {"ap": 0.31, "ap50": 0.47, "ap25": 0.55,
                       "per_class": {"chair": {"ap": 0.2, "ap50": 0.3, "ap25": None}}},
           "folds": [], "eval_scenes": ["Area_5/office_1"], "num_train_scenes": 2, "num_train_masks": 4,
           "num_masks_total": 40, "wall_time_s": 1.5, "finished": "2026-01-01T00:00:00+00:00"}
    return write_json(tmp_path / "result.json", with_checksum(doc))


def test_result_json(tmp_path):
    from freepoint_bench.harness.cells import read_result
    from freepoint_bench.report.store import read_result as report_read

    path = _result_doc(tmp_path)
    want = read_result(path)
    check_damage("result.json (harness)", path, lambda: read_result(path), lambda v: v == want, DataError)
    want_report = report_read(path)
    check_damage("result.json (report)", path, lambda: report_read(path), lambda v: v == want_report, DataError,
                 seed=5)


def test_damaged_result_is_not_a_finished_cell(tmp_path):
    """`bench.py report` names the damaged result in one line instead of averaging it."""
    from freepoint_bench.cli import main

    path = _result_doc(tmp_path / "results" / "p" / "freepoint" / "seed-0")
    text = path.read_text().replace("0.47", "0.97")  # a flipped digit: still valid JSON
    path.write_text(text)
    assert json.loads(text)["metrics"]["ap50"] == 0.97
    with pytest.raises(SystemExit) as exc:
        main(["report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "report")])
    assert exc.value.code == 2


def test_damaged_resume_checkpoint_trains_the_stage_again(workspace):
    """A damaged Lightning last.ckpt (what an interrupted fine-tune resumes from) is moved aside with a warning and
    the stage trains again from its first epoch: the result equals the uninterrupted run's."""
    import os

    from freepoint_bench.harness.run import RunOptions, Task, run_task

    ws = workspace

    def opts(results: Path) -> RunOptions:
        return RunOptions(results=results, checkpoints=ws["checkpoints"], cache=ws["cache"], runs=ws["runs"],
                          protocols_dir=ws["protocols"], root=ws["root"],
                          overrides={"epochs": 2, "num_queries": 8, "max_points": None})

    task = Task("synthetic-s3dis-50pct-scenes", "scratch", 0)
    want = json.loads(run_task(task, opts(ws["tmp"] / "reference"))[1].read_text())

    class Killed(Exception):
        pass

    def interrupt(stage: str, done: int, total: int, info: str) -> None:
        if stage.endswith("train") and done == 2:  # epoch 1's checkpoint is on disk, epoch 2's not yet
            raise Killed

    with pytest.raises(Killed):
        run_task(task, opts(ws["results"]), progress=interrupt)
    cell = ws["results"] / task.protocol / "scratch" / "seed-0"
    pristine = ws["tmp"] / "interrupted"
    shutil.copytree(cell, pristine, symlinks=True)
    last = cell / "work" / "fold-0" / "lightning" / "last.ckpt"
    target = last.resolve()
    count = 8 if os.environ.get("FAULTS_LONG") == "1" else 2
    outcomes: dict[str, int] = {}
    for kind, bad in corruptions(target.read_bytes(), count, seed=6):
        shutil.rmtree(cell)
        shutil.copytree(pristine, cell, symlinks=True)
        target.write_bytes(bad)
        status, path = run_task(task, opts(ws["results"]))
        got = json.loads(path.read_text())
        assert status == "done" and got["metrics"] == want["metrics"], kind
        assert [f["losses"] for f in got["folds"]] == [f["losses"] for f in want["folds"]], kind
        damaged = list(last.parent.glob("*.damaged"))
        tally(outcomes, f"{kind}: {'trained again' if damaged else 'resumed (damage in unused bytes)'}")
    record_figures("corruption:resume last.ckpt", {"cases": count, "outcomes": outcomes})
