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
    splits = tmp_path / "splits"
    path, _ = freeze_split(spec, names=names, protocols_dir=protocols, splits_dir=splits)
    want = load_split(spec, protocols, splits)
    check_damage("split .json", path, lambda: load_split(spec, protocols, splits), lambda v: v == want, ConfigError)
    sidecar = Path(str(path) + ".sha256")
    check_damage("split .sha256 sidecar", sidecar, lambda: load_split(spec, protocols, splits), lambda v: v == want,
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
    from freepoint_bench.results import read_result

    path = _result_doc(tmp_path)
    want = read_result(path)
    # the one reader of harness and report, over the two damage sets their two former readers were checked with
    check_damage("result.json (harness)", path, lambda: read_result(path), lambda v: v == want, DataError)
    check_damage("result.json (report)", path, lambda: read_result(path), lambda v: v == want, DataError, seed=5)


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


class Killed(Exception):
    pass


def interrupted_cell(ws: dict[str, Path], epochs: int = 2, keep_previous: bool = False):
    """Fine-tunes scratch on synthetic-s3dis-50pct-scenes (seed 0) for `epochs` once to the end (the reference)
    and once until its last epoch ends (an exception from the progress callback, which Lightning calls before the
    epoch's checkpoint: what a kill leaves, the previous epoch's file on disk).
    keep_previous: put the file before that back too, with last.ckpt linking to it, as a kill inside Lightning's
    epoch-end save (after writing the new file, before deleting the old one and relinking) leaves.
    Returns (run(progress) -> result, the reference result, the cell folder, a pristine copy of it)."""
    from freepoint_bench.harness.run import RunOptions, Task, run_task

    def opts(results: Path) -> RunOptions:
        return RunOptions(results=results, checkpoints=ws["checkpoints"], cache=ws["cache"], runs=ws["runs"],
                          protocols_dir=ws["protocols"], root=ws["root"],
                          overrides={"epochs": epochs, "num_queries": 8, "max_points": None})

    task = Task("synthetic-s3dis-50pct-scenes", "scratch", 0)
    want = json.loads(run_task(task, opts(ws["tmp"] / f"reference-{epochs}"))[1].read_text())
    cell = ws["results"] / task.protocol / "scratch" / "seed-0"
    lightning = cell / "work" / "fold-0" / "lightning"
    older = ws["tmp"] / "older.ckpt"

    def interrupt(stage: str, done: int, total: int, info: str) -> None:
        if stage.endswith("train") and done == epochs - 1 and keep_previous:
            shutil.copy2(lightning / f"epoch={epochs - 3:03d}.ckpt", older)  # (mtime kept: older than the next)
        if stage.endswith("train") and done == epochs:
            raise Killed

    shutil.rmtree(cell, ignore_errors=True)
    with pytest.raises(Killed):
        run_task(task, opts(ws["results"]), progress=interrupt)
    if keep_previous:
        shutil.copy2(older, lightning / older.name)
        (lightning / older.name).rename(lightning / f"epoch={epochs - 3:03d}.ckpt")
        (lightning / "last.ckpt").unlink()
        (lightning / "last.ckpt").symlink_to(f"epoch={epochs - 3:03d}.ckpt")
    pristine = ws["tmp"] / f"interrupted-{epochs}-{int(keep_previous)}"
    shutil.copytree(cell, pristine, symlinks=True)

    def run(progress=None) -> dict:
        status, path = run_task(task, opts(ws["results"]), progress=progress)
        assert status == "done"
        return json.loads(path.read_text())

    return run, want, cell, pristine


def same_cell(got: dict, want: dict, case: str) -> None:
    assert got["metrics"] == want["metrics"], case
    assert [f["losses"] for f in got["folds"]] == [f["losses"] for f in want["folds"]], case


def restore(cell: Path, pristine: Path) -> Path:
    """Puts the interrupted cell back; returns its lightning folder."""
    shutil.rmtree(cell)
    shutil.copytree(pristine, cell, symlinks=True)
    return cell / "work" / "fold-0" / "lightning"


def test_damaged_resume_checkpoint_trains_the_stage_again(workspace):
    """A damaged Lightning last.ckpt (what an interrupted fine-tune resumes from) is moved aside with a warning and
    the stage trains again from its first epoch: the result equals the uninterrupted run's."""
    import os

    run, want, cell, pristine = interrupted_cell(workspace)
    restore(cell, pristine)
    last = cell / "work" / "fold-0" / "lightning" / "last.ckpt"
    target = last.resolve()
    count = 8 if os.environ.get("FAULTS_LONG") == "1" else 2
    outcomes: dict[str, int] = {}
    for kind, bad in corruptions(target.read_bytes(), count, seed=6):
        restore(cell, pristine)
        target.write_bytes(bad)
        same_cell(run(), want, kind)
        damaged = list(last.parent.glob("*.damaged"))
        tally(outcomes, f"{kind}: {'trained again' if damaged else 'resumed (damage in unused bytes)'}")
    record_figures("corruption:resume last.ckpt", {"cases": count, "outcomes": outcomes})


def epochs_trained(run) -> tuple[dict, list[int]]:
    """Returns run()'s result and the epochs (1-based) it trained."""
    trained: list[int] = []
    got = run(lambda stage, done, total, info: trained.append(done) if stage.endswith("train") else None)
    return got, trained


def optimiser_spans(path: Path) -> list[tuple[str, int, int]]:
    """Returns (name, offset, length) of each AdamW moment tensor's bytes in a Lightning checkpoint file (torch
    stores tensors uncompressed; a span whose bytes occur more than once in the file is left out)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    data = path.read_bytes()
    spans = []
    for index, state in blob["optimizer_states"][0]["state"].items():
        for name in ("exp_avg", "exp_avg_sq"):
            raw = state[name].contiguous().numpy().tobytes()
            at = data.find(raw)
            if len(raw) >= 64 and at >= 0 and data.find(raw, at + 1) < 0:
                spans.append((f"{name}[{index}]", at, len(raw)))
    return spans


def test_flipped_optimiser_state_trains_from_the_previous_good_point(workspace, caplog):
    """A byte flipped inside the optimiser state (an AdamW moment; the weights untouched) of the newest epoch file
    an interrupted fine-tune would resume from is detected by the sha256 recorded of every part of the file, the
    file is moved aside and the stage trains from the previous good point: the older epoch file when a kill inside
    Lightning's save left one, else the first epoch (Lightning keeps one epoch file). The result equals the
    uninterrupted run's. Before those records covered the optimiser state, such a file resumed as if valid.
    Edits of the other parts (scheduler, loop counters, ...) are named too (check_every_part)."""
    import logging
    import os
    import random

    rng = random.Random(7)
    count = 6 if os.environ.get("FAULTS_LONG") == "1" else 2
    outcomes: dict[str, int] = {}
    # (epochs, an older file kept, the newest file, the epochs (1-based) a rerun trains: undamaged, damaged)
    for epochs, window, newest, clean, after_damage in ((2, False, "epoch=000.ckpt", [2], [1, 2]),
                                                        (3, True, "epoch=001.ckpt", [3], [2, 3])):
        run, want, cell, pristine = interrupted_cell(workspace, epochs, keep_previous=window)
        lightning = restore(cell, pristine)
        got, trained = epochs_trained(run)
        same_cell(got, want, f"{epochs} epochs, undamaged")
        assert trained == clean, (epochs, trained)  # resumed from the newest file
        spans = optimiser_spans(pristine / "work" / "fold-0" / "lightning" / newest)
        if not window:
            check_every_part(pristine / "work" / "fold-0" / "lightning" / newest, workspace["tmp"] / "edited.ckpt")
        assert spans, "no AdamW moment found in the checkpoint's bytes"
        for case in range(count // 2):
            lightning = restore(cell, pristine)
            name, at, length = spans[rng.randrange(len(spans))]
            data = bytearray((lightning / newest).read_bytes())
            data[at + rng.randrange(length)] ^= 1 << rng.randrange(8)
            (lightning / newest).write_bytes(bytes(data))
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="freepoint_bench.engine.trainer"):
                got, trained = epochs_trained(run)
            same_cell(got, want, f"{name} {case}")
            assert (lightning / f"{newest}.damaged").is_file()
            assert any("optimizer_states differ" in r.getMessage() for r in caplog.records), caplog.text
            assert trained == after_damage, (name, trained)
            tally(outcomes, f"{'older epoch file kept' if window else 'one epoch file'}: moved aside, trained "
                            f"epochs {after_damage} again")
    record_figures("corruption:resume optimiser state", {"cases": count, "outcomes": outcomes})


def check_every_part(path: Path, scratch: Path) -> None:
    """Every part of a resume checkpoint is covered: a changed optimiser hyper-parameter, scheduler step, loop
    counter, loss-history value or epoch, saved back (to `scratch`) with the old record, is named as damaged; so is
    a file whose record is gone or lists other parts. The untouched file passes."""
    from freepoint_bench.engine.trainer import _damage
    from freepoint_bench.models.checkpoint import RESUME_SHA256_KEY, tree_sha256

    assert _damage(path) is None
    blob = torch.load(path, map_location="cpu", weights_only=True)
    assert set(blob[RESUME_SHA256_KEY]) >= {"state_dict", "optimizer_states", "lr_schedulers", "loops", "epoch"}

    def bump_float(value: float) -> float:
        return float(np.nextafter(value, np.inf))

    edits = {
        "optimizer_states": lambda b: b["optimizer_states"][0]["param_groups"][0].update(
            lr=bump_float(b["optimizer_states"][0]["param_groups"][0]["lr"])),
        "lr_schedulers": lambda b: b["lr_schedulers"][0].update(last_epoch=b["lr_schedulers"][0]["last_epoch"] - 1),
        "loops": lambda b: b["loops"]["fit_loop"]["epoch_progress"]["total"].update(processed=2),
        "freepoint_bench_loss_history": lambda b: b["freepoint_bench_loss_history"][0].update(
            loss=bump_float(b["freepoint_bench_loss_history"][0]["loss"])),
        "epoch": lambda b: b.update(epoch=b["epoch"] + 1),
    }
    damaged = scratch
    for part, edit in edits.items():
        copy = torch.load(path, map_location="cpu", weights_only=True)
        edit(copy)
        assert tree_sha256(copy[part]) != tree_sha256(blob[part]), part  # the edit changed something
        torch.save(copy, damaged)
        problem = _damage(damaged)
        assert problem is not None and part in problem, (part, problem)
    gone = torch.load(path, map_location="cpu", weights_only=True)
    del gone[RESUME_SHA256_KEY]
    torch.save(gone, damaged)
    assert "no sha256 record" in _damage(damaged)
    renamed = torch.load(path, map_location="cpu", weights_only=True)
    renamed["optimizer_statez"] = renamed.pop("optimizer_states")
    torch.save(renamed, damaged)
    assert "optimizer_statez" in _damage(damaged)
