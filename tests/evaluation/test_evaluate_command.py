"""`bench.py evaluate` end to end on a tiny VoteNet-layout dataset: its scores, and what it imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from freepoint_bench.evaluation import Predictions, evaluate, scannet_spec, write_predictions

REPO = Path(__file__).resolve().parents[2]
# What scoring a cached submission must not pay for: the readers' format libraries, tuning, the method's
# geometry, the models.
HEAVY = ("pandas", "scipy", "torch", "optuna", "plyfile", "freepoint_bench.data.readers", "freepoint_bench.tuning",
         "freepoint_bench.freepoint", "freepoint_bench.geometry", "freepoint_bench.models")  # fmt: skip

_RUN = """
import sys
from freepoint_bench.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code or 0
else:
    code = 0
print("MODULES", " ".join(sorted(sys.modules)))
sys.exit(code)
"""


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _RUN, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_evaluate_scores_a_cached_submission_importing_only_what_it_uses(tmp_path):
    rng = np.random.default_rng(0)
    root, sub, cache = tmp_path / "npy", tmp_path / "sub", tmp_path / "cache"
    root.mkdir()
    gts, preds = [], {}
    for s in range(2):
        name = f"scene{s:04d}_00"
        ins = np.sort(rng.integers(0, 5, 800))  # 0 = unannotated in this layout
        sem = np.where(ins > 0, np.array([0, 5, 7, 5, 3])[ins], 0)
        np.save(root / f"{name}_vert.npy", rng.random((800, 6)).astype(np.float32))
        np.save(root / f"{name}_sem_label.npy", sem)
        np.save(root / f"{name}_ins_label.npy", ins)
        masks = (ins[None, :] == np.arange(1, 5)[:, None]) ^ (rng.random((4, 800)) < 0.05)
        preds[name] = Predictions(masks, [5, 7, 5, 3], rng.random(4).astype(np.float32))
        write_predictions(sub, name, preds[name])
        gts.append((name, np.where(sem == 0, -1, sem), np.where(ins == 0, -1, ins)))
    common = ["--dataset", "scannet-npy", "--root", root, "--cache", cache]
    prepared = _bench("data", "prepare", *common)
    assert prepared.returncode == 0, prepared.stderr
    out = tmp_path / "r.json"
    run = _bench("evaluate", *common, "--predictions", sub, "--json", out, "--min-region-size", "20")
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    want = evaluate(gts, preds, scannet_spec(min_region_size=20))
    assert (result["ap"], result["ap50"], result["ap25"]) == (want.ap, want.ap50, want.ap25)
    modules = set(run.stdout.split("MODULES", 1)[1].split())
    loaded = sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert not loaded, f"bench.py evaluate imported {loaded}"
    assert "freepoint_bench.evaluation" in modules and "freepoint_bench.data.store" in modules


def test_evaluate_refuses_a_malformed_mask_in_one_line(tmp_path):
    root, sub = tmp_path / "npy", tmp_path / "sub"
    root.mkdir()
    np.save(root / "scene0000_00_vert.npy", np.zeros((3, 6), np.float32))
    np.save(root / "scene0000_00_sem_label.npy", np.array([5, 5, 0]))
    np.save(root / "scene0000_00_ins_label.npy", np.array([1, 1, 0]))
    (sub / "pred_mask").mkdir(parents=True)
    (sub / "scene0000_00.txt").write_text("pred_mask/a.txt 5 0.5\n")
    (sub / "pred_mask" / "a.txt").write_text("1\n1\n0.x\n")
    common = ["--dataset", "scannet-npy", "--root", root, "--cache", tmp_path / "c"]
    run = _bench("evaluate", *common, "--predictions", sub)
    assert run.returncode == 2
    err = " ".join(run.stderr.split())
    assert "a.txt:3: '0.x' is not a number" in err and "Traceback" not in err
