"""kill -9 at seeded moments of `pseudo-labels`, `pretrain`, `finetune` and `run`, then the same command again:
it finishes, finished work is not redone (files finished before a kill keep their inode: atomic writes give a
rewritten file a new one), and the outputs equal an uninterrupted run's, bit for bit on CPU.

Each command runs as a chain: start it, SIGKILL its process group at the first kill point, start it again, kill
it at the next point, ..., then let it finish. A point is "once this run has written N new progress files (label
files, epoch checkpoints, finished steps, predictions, results), after a seeded delay", so every run gets further
than the last and the kills land across the stages; the figures name the file each kill came after. The default
suite tries 2-3 points per command; `make test-faults-long` (FAULTS_LONG=1) 11-14 each.
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from .conftest import FT, PT, PT_RUN, KillPoint, kill_chain, record_figures, stat_id, where

LONG = os.environ.get("FAULTS_LONG") == "1"


def in_process(*args: str) -> None:
    """Runs bench.py's main in this process (the uninterrupted reference), one torch thread as the subprocesses."""
    from freepoint_bench.cli import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(SystemExit) as exc:
            main([str(a) for a in args])
        assert (exc.value.code or 0) == 0
    finally:
        torch.set_num_threads(threads)


def points(patterns: tuple[str, ...], counts: list[int], seed: int, max_delay: float) -> list[KillPoint]:
    """Returns a kill point per count (0: at start, within 0.5 s), each after that many new progress files and a
    seeded delay in [0, max_delay) seconds."""
    rng = random.Random(seed)
    return [KillPoint(() if c == 0 else patterns, max(c, 1), round(rng.uniform(0, 0.5 if c == 0 else max_delay), 3))
            for c in counts]


class Finished:
    """Records, at each kill, the finished files (matching `patterns`) and their inodes; checks them later."""

    def __init__(self, base: Path, patterns: list[str]) -> None:
        self.base, self.patterns, self.seen = base, patterns, {}

    def __call__(self, point: KillPoint) -> None:
        for pattern in self.patterns:
            for path in self.base.glob(pattern):
                self.seen.setdefault(path, stat_id(path))

    def redone(self) -> list[str]:
        """Returns the recorded files rewritten (or removed) since."""
        return [str(p) for p, ident in self.seen.items() if not p.is_file() or stat_id(p) != ident]

    def check_not_redone(self) -> int:
        redone = self.redone()
        assert not redone, f"finished before a kill, then rewritten: {redone}"
        return len(self.seen)


def never_restarted(log) -> None:
    """No run trained a stage again from an earlier epoch than a previous run had reached (kills name the epoch
    file they came after: per stage folder, those epochs never go down)."""
    reached: dict[str, int] = {}
    for point, _ in log.outcomes:
        m = re.search(r"after (.*)/lightning/epoch=(\d+)", point)
        if m:
            assert int(m[2]) >= reached.get(m[1], -1), f"{m[1]} trained again from epoch {int(m[2])}: {log.outcomes}"
            reached[m[1]] = int(m[2])


def npz_members(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def same_npz_tree(got: Path, want: Path, pattern: str) -> int:
    files = sorted(p.relative_to(want) for p in want.glob(pattern))
    assert files and files == sorted(p.relative_to(got) for p in got.glob(pattern))
    for rel in files:
        a, b = npz_members(got / rel), npz_members(want / rel)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), rel
    return len(files)


# ---------------------------------------------------------------------------------------------- pseudo-labels

# The default chain runs the default pool (one worker per core) on the 6 small rooms; the long one --workers 1 on 12
# rooms of 20k points (~0.3 s a scene), so that each run adds about one scene before its kill.
PL_DEFAULT, PL_LONG = [1, 2, 2], [0] + [1] * 11


def test_pseudo_labels_killed(workspace, tmp_path_factory):
    ws = workspace
    root, extra = ws["root"], []
    if LONG:
        from freepoint_bench.data.synthetic import SyntheticConfig, write_synthetic_s3dis

        root, extra = tmp_path_factory.mktemp("s3dis12"), ["--workers", "1"]
        write_synthetic_s3dis(root, 12, seed=2, config=SyntheticConfig(num_points=20_000))
    in_process("pseudo-labels", "--dataset", "s3dis", "--root", root, "--cache", ws["tmp"] / "ref-cache",
               "--out", ws["tmp"] / "reference")
    # the chain prepares its own scene cache: early kills land in imports or in `data prepare`
    base = ["pseudo-labels", "--dataset", "s3dis", "--root", root, "--cache", ws["tmp"] / "cache-chain", *extra]
    out = ws["tmp"] / "labels"
    out.mkdir()
    finished = Finished(out, ["*/sigma_*.npz"])
    log = kill_chain([*map(str, base), "--out", str(out)],
                     points(("*/sigma_*.npz",), PL_LONG if LONG else PL_DEFAULT, 0, 0.2 if LONG else 0.02), out,
                     ws["tmp"], on_kill=finished)
    files = same_npz_tree(out, ws["tmp"] / "reference", "*/sigma_*.npz")
    kept = finished.check_not_redone()
    summary = json.loads((out / "summary_0_of_1.json").read_text())
    assert summary["cached"] >= kept // 2  # scenes whose both σ files survived a kill were not recomputed
    record_figures("kill:pseudo-labels", {"points": log.outcomes, "killed": log.killed, "files_compared": files,
                                          "finished_before_a_kill": kept})
    # every point was reached (each run got that far before its kill); the last may race the command's exit
    assert log.killed >= len(log.outcomes) - 1


# ---------------------------------------------------------------------------------------------- pretrain

PRE = ("run/pseudo-labels/*/sigma_*.npz", "run/step*/lightning/epoch=*.ckpt", "run/step*/done.json")
# default: the first kill after the 10 label files and step 1's first epoch, the next one epoch later
PRE_DEFAULT, PRE_LONG = [11, 1], [0] + [1] * 11


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def same_weights(a: Path, b: Path) -> None:
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    diff = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not diff, f"{a.name}: {len(diff)} tensors differ from the uninterrupted run's (e.g. {diff[0]})"


def pretrain_args(ws, run: Path, ckpt: Path) -> list[str]:
    epochs = ["--epochs1", "3", "--epochs2", "2", "--workers", "1"] if LONG else ["--epochs1", "2", "--epochs2", "1"]
    return ["pretrain", "--method", "freepoint", "--dataset", "s3dis", "--root", str(ws["root"]), "--cache",
            str(ws["cache"]), "--out", str(run), "--checkpoints", str(ckpt), "--resume", *epochs, *PT]


def test_pretrain_killed(workspace):
    ws = workspace
    ref_ckpt = ws["tmp"] / "ref-ckpt"
    in_process(*pretrain_args(ws, ws["tmp"] / "ref-run", ref_ckpt))
    run, ckpt = ws["tmp"] / "run", ws["tmp"] / "ckpt"
    run.mkdir()
    finished = Finished(run, ["pseudo-labels/*/sigma_*.npz", "step*/segmenter.ckpt", "step*/done.json"])
    log = kill_chain(pretrain_args(ws, run, ckpt), points(PRE, PRE_LONG if LONG else PRE_DEFAULT, 1, 0.03),
                     ws["tmp"], ws["tmp"], on_kill=finished)
    for part in ("backbone", "segmenter"):  # (the ids differ: they hash the pseudo-label folder, in the run dir)
        (got,), (want,) = ckpt.glob(f"*-{part}.ckpt"), ref_ckpt.glob(f"*-{part}.ckpt")
        same_weights(got, want)
    for step in ("step1", "step2"):
        same_weights(run / step / "segmenter.ckpt", ws["tmp"] / "ref-run" / step / "segmenter.ckpt")
        done, ref = (json.loads((d / step / "done.json").read_text()) for d in (run, ws["tmp"] / "ref-run"))
        assert done["loss_history"] == ref["loss_history"]  # every epoch's losses, bit for bit
    assert len(json.loads((ckpt / "index.json").read_text())["checkpoints"]) == 1
    kept = finished.check_not_redone()
    same_npz_tree(run / "pseudo-labels", ws["tmp"] / "ref-run" / "pseudo-labels", "*/sigma_*.npz")
    never_restarted(log)
    record_figures("kill:pretrain", {"points": log.outcomes, "killed": log.killed, "finished_before_a_kill": kept})
    assert log.killed >= len(log.outcomes) - 1


# ---------------------------------------------------------------------------------------------- finetune

FT_ARGS = ["--set", f"epochs={4 if LONG else 2}", *FT]
FTP = ("*/*/seed-*/work/fold-*/lightning/epoch=*.ckpt", "*/*/seed-*/work/fold-*/predictions.npz",
       "*/*/seed-*/work/fold-*/fold.json", "*/*/seed-*/result.json")
FT_DEFAULT, FT_LONG = [1, 3], [0] + [1] * 10
SAME = ("metrics", "eval_scenes", "num_train_scenes", "num_train_masks", "split_sha256", "protocol_hash", "config")


def same_results(got: Path, want: Path) -> int:
    files = sorted(p.relative_to(want) for p in want.glob("*/*/seed-*/result.json"))
    assert files and files == sorted(p.relative_to(got) for p in got.glob("*/*/seed-*/result.json"))
    for rel in files:
        a, b = (json.loads((d / rel).read_text()) for d in (got, want))
        for key in SAME:
            assert a[key] == b[key], (rel, key)
        assert a["checkpoint"]["weights_sha256"] == b["checkpoint"]["weights_sha256"], rel
        assert [f["losses"] for f in a["folds"]] == [f["losses"] for f in b["folds"]], rel  # every epoch's losses
    return len(files)


def finetune_args(ws, seeds=("0", "1")) -> list[str]:
    return ["finetune", "--protocol", "synthetic-s3dis-50pct-scenes", "--method", "scratch", "--seeds", *seeds,
            *where(ws), *FT_ARGS]


def test_finetune_killed(workspace):
    ws = workspace
    ref = {**ws, "results": ws["tmp"] / "ref-results", "checkpoints": ws["tmp"] / "ref-ckpt",
           "runs": ws["tmp"] / "ref-runs"}
    in_process(*finetune_args(ref))
    ws["results"].mkdir()
    finished = Finished(ws["results"], ["*/*/seed-*/result.json", "*/*/seed-*/work/fold-*/fold.json"])
    log = kill_chain(finetune_args(ws), points(FTP, FT_LONG if LONG else FT_DEFAULT, 2, 0.03), ws["results"],
                     ws["tmp"], on_kill=finished)
    cells = same_results(ws["results"], ref["results"])
    kept = finished.check_not_redone()
    never_restarted(log)
    record_figures("kill:finetune", {"points": log.outcomes, "killed": log.killed, "cells_compared": cells,
                                     "finished_before_a_kill": kept})
    assert log.killed >= len(log.outcomes) - 1


# ---------------------------------------------------------------------------------------------- run

RUN_ARGS = ["--set", "epochs=2", *FT, "--pretrain-set", "epochs1=2", "--pretrain-set", "epochs2=2", *PT_RUN]
RUN_METHODS = ("freepoint", "scratch")
RUNP = tuple(f"runs/pretrain/freepoint-*/{p.removeprefix('run/')}" for p in PRE) + tuple(f"results/{p}" for p in FTP)
# default: the first kill in FreePoint's step 1 (after its 10 label files), the next in the FreePoint cell.
# long: start-up; 2 in the pseudo labels (after 3, then 4 more of the 10 label files); the rest of the labels and
# 5 single files (epoch checkpoints, done.json) in pretraining; 5 single files (epoch checkpoints, predictions,
# fold.json, result.json) through the two fine-tuning cells
RUN_DEFAULT, RUN_LONG = [11, 5], [0, 3, 4, 3] + [1] * 5 + [1] * 5
STAGES = ("pseudo-labels", "pretraining", "fine-tuning")


def run_args(ws) -> list[str]:
    return ["run", "--methods", ",".join(RUN_METHODS), "--protocols", "synthetic-s3dis-50pct-scenes", "--seeds", "0",
            *where(ws), *RUN_ARGS]


class StageAtKill:
    """Records, at each kill of a `run` chain, the stage it interrupted: the first whose outputs were not all on
    disk (pseudo-labels: fewer label files than the uninterrupted run made; pretraining: no step2/done.json;
    fine-tuning <method>: the first cell, in run order, without its result.json), "start-up" for a timed kill."""

    def __init__(self, base: Path, labels: int) -> None:
        self.base, self.labels, self.at = base, labels, {}

    def stage(self, point: KillPoint) -> str:
        if not point.patterns:
            return "start-up"
        if len(list(self.base.glob("runs/pretrain/freepoint-*/pseudo-labels/*/sigma_*.npz"))) < self.labels:
            return "pseudo-labels"
        if not list(self.base.glob("runs/pretrain/freepoint-*/step2/done.json")):
            return "pretraining"
        for method in RUN_METHODS:
            if not list(self.base.glob(f"results/*/{method}/seed-*/result.json")):
                return f"fine-tuning {method}"
        return "after the last cell"

    def __call__(self, point: KillPoint) -> None:
        self.at[id(point)] = self.stage(point)

    def of(self, points: list[KillPoint]) -> list[str]:
        """Returns the stage each point's kill interrupted ("-": the command had finished before it)."""
        return [self.at.get(id(p), "-") for p in points]


def test_run_killed(workspace):
    ws = workspace
    ref = {**ws, "results": ws["tmp"] / "ref-results", "checkpoints": ws["tmp"] / "ref-ckpt",
           "runs": ws["tmp"] / "ref-runs"}
    in_process(*run_args(ref))
    labels = len(list(ref["runs"].glob("pretrain/freepoint-*/pseudo-labels/*/sigma_*.npz")))
    finished = Finished(ws["tmp"], ["results/*/*/seed-*/result.json", "results/*/*/seed-*/work/fold-*/fold.json",
                                    "runs/pretrain/*/step*/segmenter.ckpt", "runs/pretrain/*/step*/done.json",
                                    "runs/pretrain/*/pseudo-labels/*/sigma_*.npz"])
    # a rerun after a pretraining finished finds its published checkpoints in place and keeps them
    published = Finished(ws["tmp"], ["ckpt/*.ckpt"])
    stages = StageAtKill(ws["tmp"], labels)

    def on_kill(point: KillPoint) -> None:
        finished(point)
        published(point)
        stages(point)

    chain = points(RUNP, RUN_LONG if LONG else RUN_DEFAULT, 3, 0.03)
    log = kill_chain(run_args(ws), chain, ws["tmp"], ws["tmp"], on_kill=on_kill)
    cells = same_results(ws["results"], ref["results"])
    for kind in ("freepoint-*-backbone", "freepoint-*-segmenter", "scratch-*-backbone"):
        (got,), (want,) = ws["checkpoints"].glob(f"{kind}.ckpt"), ref["checkpoints"].glob(f"{kind}.ckpt")
        same_weights(got, want)
    same_npz_tree(ws["runs"] / "pretrain", ref["runs"] / "pretrain", "freepoint-*/pseudo-labels/*/sigma_*.npz")
    index = json.loads((ws["checkpoints"] / "index.json").read_text())
    assert sorted(e["method"] for e in index["checkpoints"].values()) == ["freepoint", "scratch"]
    kept = finished.check_not_redone()
    published.check_not_redone()
    never_restarted(log)
    killed = [stage for stage in stages.of(chain) if stage != "-"]
    per_stage = {stage: sum(k.startswith(stage) for k in killed) for stage in ("start-up", *STAGES)}
    record_figures("kill:run", {"points": [[*o, s] for o, s in zip(log.outcomes, stages.of(chain), strict=True)],
                                "killed": log.killed, "per_stage": per_stage, "cells_compared": cells,
                                "finished_before_a_kill": kept, "published_before_a_kill": len(published.seen),
                                "published_again": len(published.redone())})
    assert log.killed >= len(log.outcomes) - 1
    if LONG:  # every stage of `run` interrupted at least twice, the fine-tuning in both cells
        assert all(per_stage[stage] >= 2 for stage in STAGES), (per_stage, log.outcomes)
        assert {k for k in killed if k.startswith("fine-tuning")} == {f"fine-tuning {m}" for m in RUN_METHODS}, killed
    else:
        assert killed == ["pretraining", "fine-tuning freepoint"], (killed, log.outcomes)
