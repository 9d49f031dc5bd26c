"""Evaluator speed: the matching in-process, and `bench.py evaluate` end to end beside ScanNet's script.

Usage:
    python benchmarks/bench_evaluator.py [--scenes 300] [--preds 100] [--points 50000]
    python benchmarks/bench_evaluator.py --end-to-end [--scans 50] [--masks 36] [--points 50000] [--repeats 3]

In-process (default): scenes have 40 GT instances of random valid classes; predictions are noisy copies of
GT masks with mostly the right labels and random scores; evaluate() is timed on arrays already in memory,
and reading/writing the benchmark format on one scene.

--end-to-end: a generated ScanNet-style submission (`--scans` scans of `--points` points, `--masks` mask
files a scan, 0/1 lines) and its GT, both as ScanNet's benchmark files (`<scene>.txt`, one
`label * 1000 + instance` per line) and as VoteNet-style npy files cached once by `bench.py data prepare`.
Two whole processes are timed in turn, A B A B (after one untimed warm-up each, so both read warm files):
A = ScanNet's `evaluate_semantic_instance.py`, re-implemented below (there is no network to fetch it) and
B = `bench.py evaluate --dataset scannet-npy`. Reported: median wall time of `--repeats` runs, user and
system CPU, peak resident memory (the child's own VmHWM), the speed-up A / B in wall time and in CPU time
(user + system: the fairer figure on a shared, busy machine), and AP / AP50 / AP25 of
both, which must agree to 1e-9 (exit status 1 if they do not). The figures and the machine they were
measured on are in docs/studies/evaluator-speed.md.
"""

from __future__ import annotations

# Only the standard library and numpy at module level: the `scannet-official` mode must pay for no more
# imports than ScanNet's script does (it imports numpy, and plyfile through util_3d).
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from copy import deepcopy
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OFFICIAL_MODE = "scannet-official"

# ------------------------------------------------------------------ ScanNet's script, re-implemented
# A re-implementation of the loop of ScanNet's BenchmarkScripts/3d_evaluation/evaluate_semantic_instance.py
# and the util_3d helpers it calls (load_ids, get_instances, read_instance_prediction_file), ported to
# Python 3, for timing and for the numbers. It does what the script does, in its order: every text file read
# whole and split into lines, converted by np.array(lines, int64); GT instances found by np.unique and one
# full-length comparison each; for every prediction one full-length comparison per GT instance of its
# class; dict copies per match; curves grown with np.append; the same AP integration. Two deliberate
# changes, both made by freepoint_bench too (see freepoint_bench/evaluation/instance_ap.py): (1) void points
# are those whose `gt_id // 1000` is not a valid class id, the rule the script's comment describes (the
# repository's line compares the encoded ids themselves with the class ids and so marks no point void);
# (2) a class whose curve is empty (every GT missed, every prediction ignored) scores 0 where the script
# stops with an IndexError. Neither changes what is timed.

SCANNET_LABELS = (
    "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture", "counter", "desk",
    "curtain", "refrigerator", "shower curtain", "toilet", "sink", "bathtub", "otherfurniture",
)  # fmt: skip
SCANNET_IDS = np.array([3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39])  # as the script has them
OVERLAPS = np.append(np.arange(0.5, 0.95, 0.05), 0.25)
MIN_REGION_SIZE = 100


def official_load_ids(path: str) -> np.ndarray:
    """Returns the integers of a one-per-line text file, parsed as util_3d.load_ids does."""
    with open(path) as f:
        lines = f.read().splitlines()
    return np.array(lines, dtype=np.int64)


def official_prediction_file(path: str, pred_path: str) -> dict[str, dict]:
    """Returns {absolute mask path: {label_id, conf}} in file order (util_3d.read_instance_prediction_file)."""
    with open(path) as f:
        lines = f.read().splitlines()
    root = os.path.abspath(pred_path)
    info = {}
    for line in lines:
        parts = line.split(" ")
        if len(parts) != 3 or os.path.isabs(parts[0]):
            sys.exit(f"invalid instance prediction file {path}: {line!r}")
        mask_file = os.path.abspath(os.path.join(os.path.dirname(path), parts[0]))
        if os.path.commonprefix([mask_file, root]) != root:
            sys.exit(f"predicted mask {mask_file} in {path} points outside of {root}")
        info[mask_file] = {"label_id": int(float(parts[1])), "conf": float(parts[2])}
    return info


def official_gt_instances(gt_ids: np.ndarray) -> dict[str, list[dict]]:
    """Returns, per class name, the GT instances of a scan as dicts (util_3d.get_instances)."""
    label_of = dict(zip(SCANNET_IDS.tolist(), SCANNET_LABELS, strict=True))
    out: dict[str, list[dict]] = {name: [] for name in SCANNET_LABELS}
    for gid in np.unique(gt_ids):
        if gid == 0:
            continue
        label_id = int(gid // 1000)
        if label_id in SCANNET_IDS:
            out[label_of[label_id]].append(
                {
                    "instance_id": int(gid),
                    "label_id": label_id,
                    "vert_count": int((gt_ids == gid).sum()),
                    "med_dist": -1,
                    "dist_conf": 0.0,
                }
            )
    return out


def official_assign(pred_file: str, gt_file: str, pred_path: str) -> tuple[dict, dict]:
    """Returns (gt2pred, pred2gt) of one scan: every prediction intersected with every GT of its class."""
    label_of = dict(zip(SCANNET_IDS.tolist(), SCANNET_LABELS, strict=True))
    pred_info = official_prediction_file(pred_file, pred_path)
    gt_ids = official_load_ids(gt_file)
    gt2pred = deepcopy(official_gt_instances(gt_ids))
    for gts in gt2pred.values():
        for gt in gts:
            gt["matched_pred"] = []
    pred2gt: dict[str, list[dict]] = {name: [] for name in SCANNET_LABELS}
    bool_void = np.logical_not(np.isin(gt_ids // 1000, SCANNET_IDS))
    num_pred = 0
    for mask_file, info in pred_info.items():
        label_id = int(info["label_id"])
        if label_id not in label_of:
            continue
        label_name = label_of[label_id]
        mask = official_load_ids(mask_file)
        if len(mask) != len(gt_ids):
            sys.exit(f"wrong number of lines in {mask_file} ({len(mask)}) vs #mesh vertices ({len(gt_ids)})")
        mask = np.not_equal(mask, 0)
        num = np.count_nonzero(mask)
        if num < MIN_REGION_SIZE:
            continue
        pred = {
            "filename": mask_file,
            "pred_id": num_pred,
            "label_id": label_id,
            "vert_count": num,
            "confidence": info["conf"],
            "void_intersection": np.count_nonzero(np.logical_and(bool_void, mask)),
        }
        matched_gt = []
        for gt in gt2pred[label_name]:
            inter = np.count_nonzero(np.logical_and(gt_ids == gt["instance_id"], mask))
            if inter > 0:
                gt_copy, pred_copy = gt.copy(), pred.copy()
                gt_copy["intersection"] = pred_copy["intersection"] = inter
                matched_gt.append(gt_copy)
                gt["matched_pred"].append(pred_copy)
        pred["matched_gt"] = matched_gt
        num_pred += 1
        pred2gt[label_name].append(pred)
    return gt2pred, pred2gt


def official_ap(
    matches: dict[str, dict], labels: tuple[str, ...] = SCANNET_LABELS, min_region_size: int = MIN_REGION_SIZE
) -> np.ndarray:
    """Returns the (classes, overlaps) AP table of the script's evaluate_matches (one distance setting).

    matches: per scan {"gt": {label: [gt dict]}, "pred": {label: [pred dict]}} as official_assign builds
    them (tests/evaluation builds them for other class lists too, and checks this against the package).
    """
    ap = np.zeros((len(labels), len(OVERLAPS)))
    for oi, th in enumerate(OVERLAPS):
        visited = {p["filename"]: False for m in matches.values() for lab in labels for p in m["pred"][lab]}
        for li, lab in enumerate(labels):
            y_true, y_score = np.empty(0), np.empty(0)
            hard_fn, has_gt, has_pred = 0, False, False
            for m in matches.values():
                preds = m["pred"][lab]
                gts = [g for g in m["gt"][lab] if g["instance_id"] >= 1000 and g["vert_count"] >= min_region_size]
                has_gt |= bool(gts)
                has_pred |= bool(preds)
                cur_true = np.ones(len(gts))
                cur_score = np.ones(len(gts)) * -math.inf
                cur_match = np.zeros(len(gts), dtype=bool)
                for gi, gt in enumerate(gts):
                    found = False
                    for pr in gt["matched_pred"]:
                        if visited[pr["filename"]]:
                            continue
                        iou = float(pr["intersection"]) / (gt["vert_count"] + pr["vert_count"] - pr["intersection"])
                        if iou > th:
                            conf = pr["confidence"]
                            if cur_match[gi]:  # a second match: the lower score is a false positive
                                lo, hi = min(cur_score[gi], conf), max(cur_score[gi], conf)
                                cur_score[gi] = hi
                                cur_true = np.append(cur_true, 0)
                                cur_score = np.append(cur_score, lo)
                                cur_match = np.append(cur_match, True)
                            else:
                                found = True
                                cur_match[gi] = True
                                cur_score[gi] = conf
                                visited[pr["filename"]] = True
                    if not found:
                        hard_fn += 1
                cur_true, cur_score = cur_true[cur_match], cur_score[cur_match]
                for pr in preds:
                    if any(
                        float(g["intersection"]) / (g["vert_count"] + pr["vert_count"] - g["intersection"]) > th
                        for g in pr["matched_gt"]
                    ):
                        continue
                    ignore = pr["void_intersection"]
                    for g in pr["matched_gt"]:
                        if g["instance_id"] < 1000:  # a group
                            ignore += g["intersection"]
                        if g["vert_count"] < min_region_size:  # a small GT instance
                            ignore += g["intersection"]
                    if float(ignore) / pr["vert_count"] <= th:
                        cur_true = np.append(cur_true, 0)
                        cur_score = np.append(cur_score, pr["confidence"])
                y_true, y_score = np.append(y_true, cur_true), np.append(y_score, cur_score)
            if has_gt and has_pred:
                order = np.argsort(y_score)
                scores, cumsum = y_score[order], np.cumsum(y_true[order])
                _, unique_idx = np.unique(scores, return_index=True)
                precision, recall = np.zeros(len(unique_idx) + 1), np.zeros(len(unique_idx) + 1)
                num_examples, num_true = len(scores), (cumsum[-1] if len(cumsum) else 0)  # (2) below
                cumsum = np.append(cumsum, 0)
                for ri, si in enumerate(unique_idx):
                    before = cumsum[si - 1]
                    tp = num_true - before
                    fp = num_examples - si - tp
                    fn = before + hard_fn
                    precision[ri], recall[ri] = float(tp) / (tp + fp), float(tp) / (tp + fn)
                precision[-1], recall[-1] = 1.0, 0.0
                widths = np.convolve(np.append(np.append(recall[0], recall), 0.0), [-0.5, 0, 0.5], "valid")
                ap[li, oi] = np.dot(precision, widths)
            elif has_gt:
                ap[li, oi] = 0.0
            else:
                ap[li, oi] = math.nan
    return ap


def official_main(argv: list[str]) -> None:
    """The script's command line: --pred_path, --gt_path, --output_file; prints and writes its table."""
    parser = argparse.ArgumentParser(prog=f"bench_evaluator.py {OFFICIAL_MODE}")
    parser.add_argument("--pred_path", required=True)
    parser.add_argument("--gt_path", required=True)
    parser.add_argument("--output_file", default="")
    opt = parser.parse_args(argv)
    output = opt.output_file or os.path.join(opt.pred_path, "semantic_instance_evaluation.txt")
    names = [f for f in os.listdir(opt.pred_path) if f.endswith(".txt") and f != "semantic_instance_evaluation.txt"]
    matches = {}
    for i, name in enumerate(names):
        gt_file = os.path.join(opt.gt_path, name)
        if not os.path.isfile(gt_file):
            sys.exit(f"Result file {name} does not match any gt file")
        gt2pred, pred2gt = official_assign(os.path.join(opt.pred_path, name), gt_file, opt.pred_path)
        matches[os.path.abspath(gt_file)] = {"gt": gt2pred, "pred": pred2gt}
        sys.stdout.write(f"\rscans processed: {i + 1}")
        sys.stdout.flush()
    print()
    ap = official_ap(matches)
    o50, o25 = np.where(np.isclose(OVERLAPS, 0.5)), np.where(np.isclose(OVERLAPS, 0.25))
    all_but_25 = np.where(np.logical_not(np.isclose(OVERLAPS, 0.25)))
    rows = [(lab, np.average(ap[li, all_but_25]), np.average(ap[li, o50]), np.average(ap[li, o25]))
            for li, lab in enumerate(SCANNET_LABELS)]  # fmt: skip
    print(f"{'what':<15}:{'AP':>15}{'AP_50%':>15}{'AP_25%':>15}")
    for lab, a, a50, a25 in rows:
        print(f"{lab:<15}:{a:>15.3f}{a50:>15.3f}{a25:>15.3f}")
    means = (np.nanmean(ap[:, all_but_25]), np.nanmean(ap[:, o50]), np.nanmean(ap[:, o25]))
    print(f"{'average':<15}:" + "".join(f"{v:>15.3f}" for v in means))
    with open(output, "w") as f:
        f.write("class,class id,ap,ap50,ap25\n")
        for (lab, a, a50, a25), cid in zip(rows, SCANNET_IDS, strict=True):
            f.write(",".join(str(x) for x in (lab, cid, a, a50, a25)) + "\n")


# ------------------------------------------------------------------ the generated submission


def write_case(work: Path, scans: int, masks: int, points: int, seed: int = 0) -> tuple[Path, Path, Path]:
    """Returns (npy root, GT folder, submission folder) of a generated ScanNet-style case written under work.

    Per scan: 40 object instances of random valid classes plus a wall and a floor instance (not evaluated:
    void), in blocks, ~2% unannotated points; `masks` predictions, each a GT instance (objects mostly, walls
    and floors too) with 0.2% of the scan's points flipped, some merged with another instance, some cut to
    a part, 80% with the instance's class, confidences uniform in 0..1.
    """
    from freepoint_bench.data.classes import SCANNET_INSTANCE_IDS
    from freepoint_bench.evaluation import Predictions, write_predictions

    assert tuple(SCANNET_IDS.tolist()) == SCANNET_INSTANCE_IDS
    rng = np.random.default_rng(seed)
    npy, gt_dir, sub = work / "scannet-npy", work / "gt", work / "submission"
    for d in (npy, gt_dir, sub):
        d.mkdir(parents=True, exist_ok=True)
    objects = 40
    for s in range(scans):
        name = f"scene{s:04d}_00"
        ins = np.sort(rng.integers(1, objects + 3, points))  # ids 1..objects, then wall and floor
        ins[rng.random(points) < 0.02] = 0  # unannotated
        cls = np.concatenate([rng.choice(SCANNET_IDS, objects), [1, 2]])  # NYU40 wall = 1, floor = 2
        sem = np.where(ins > 0, cls[ins - 1], 0)
        vert = rng.random((points, 6)).astype(np.float32) * np.float32([5, 5, 3, 255, 255, 255])
        np.save(npy / f"{name}_vert.npy", vert)
        np.save(npy / f"{name}_sem_label.npy", sem.astype(np.int64))
        np.save(npy / f"{name}_ins_label.npy", ins.astype(np.int64))
        gt_ids = np.where(ins > 0, sem * 1000 + ins, 0)
        (gt_dir / f"{name}.txt").write_text("\n".join(map(str, gt_ids.tolist())) + "\n")
        any_instance = rng.integers(1, objects + 3, masks)  # walls and floors too
        pick = np.where(rng.random(masks) < 0.9, rng.integers(1, objects + 1, masks), any_instance)
        m = ins[None, :] == pick[:, None]
        merged = rng.random(masks) < 0.15
        m[merged] |= ins[None, :] == rng.integers(1, objects + 1, int(merged.sum()))[:, None]
        for k in np.flatnonzero(rng.random(masks) < 0.15):  # a part only: keep the first points
            on = np.flatnonzero(m[k])
            m[k, on[int(len(on) * rng.uniform(0.05, 0.6)) :]] = False
        m ^= rng.random((masks, points)) < 0.002
        labels = np.where(rng.random(masks) < 0.8, cls[pick - 1], rng.choice(SCANNET_IDS, masks))
        write_predictions(sub, name, Predictions(m, labels, rng.random(masks).astype(np.float32)))
    return npy, gt_dir, sub


# Runs a script as `python script args` does, then writes the process's peak resident memory in KiB to a file:
# VmHWM of /proc/self/status counts this program's own memory only, where the ru_maxrss of wait4 would start
# from the RSS of the forking parent (this benchmark, with numpy and the package loaded).
_PEAK_WRAPPER = """
import atexit, os, runpy, sys
peak_file, script = sys.argv[1], sys.argv[2]
def peak():
    with open("/proc/self/status") as f:
        kib = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    with open(peak_file, "w") as f:
        f.write(kib)
atexit.register(peak)
sys.argv = sys.argv[2:]
sys.path[0] = os.path.dirname(os.path.abspath(script))
runpy.run_path(script, run_name="__main__")
"""


def run_process(script: list[str], log: Path) -> dict:
    """Returns wall, user, sys seconds and peak RSS (MiB) of `python script args` (exit status checked)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    peak_file = log.with_suffix(".peak")
    peak_file.unlink(missing_ok=True)
    argv = [sys.executable, "-c", _PEAK_WRAPPER, str(peak_file), *script]
    with log.open("w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(script)} failed ({proc.returncode}):\n{log.read_text()[-2000:]}")
    peak = int(peak_file.read_text()) / 1024 if peak_file.is_file() else math.nan  # no /proc: not measured
    return {"wall": wall, "user": usage.ru_utime, "sys": usage.ru_stime, "peak_mib": peak}


def official_scores(result_file: Path) -> tuple[float, float, float]:
    """Returns (AP, AP50, AP25): the means over classes of the script's per-class result file."""
    rows = [line.split(",") for line in result_file.read_text().splitlines()[1:]]
    cols = np.array([[float(r[2]), float(r[3]), float(r[4])] for r in rows])
    return tuple(float(v) for v in np.nanmean(cols, axis=0))


def end_to_end(args: argparse.Namespace) -> int:
    """Prints the side-by-side table; returns 1 when the two disagree on AP / AP50 / AP25 beyond 1e-9."""
    from rich.console import Console
    from rich.table import Table

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        npy, gt_dir, sub = write_case(work, args.scans, args.masks, args.points, args.seed)
        cache = work / "cache"
        prep = ["bench.py", "data", "prepare", "--dataset", "scannet-npy", "--root", str(npy)]
        run_process([*prep, "--cache", str(cache)], work / "prepare.log")
        t_gen = time.perf_counter() - t0
        result_file, json_file = work / "official.txt", work / "ours.json"
        commands = {
            "A: ScanNet evaluate_semantic_instance.py (re-implemented)": [
                __file__, OFFICIAL_MODE, "--pred_path", str(sub), "--gt_path", str(gt_dir),
                "--output_file", str(result_file),
            ],
            "B: bench.py evaluate": [
                "bench.py", "evaluate", "--dataset", "scannet-npy", "--root", str(npy),
                "--cache", str(cache), "--predictions", str(sub), "--json", str(json_file),
            ],
        }  # fmt: skip
        runs: dict[str, list[dict]] = {k: [] for k in commands}
        for rep in range(args.repeats + 1):  # A B A B ..., the first pair a warm-up
            for key, argv in commands.items():
                r = run_process(argv, work / "run.log")
                if rep:
                    runs[key].append(r)
        official = official_scores(result_file)
        ours_d = json.loads(json_file.read_text())
        ours = (ours_d["ap"], ours_d["ap50"], ours_d["ap25"])
    n_masks = args.scans * args.masks
    table = Table(
        title=f"evaluate end to end: {args.scans} scans × {args.masks} masks ({n_masks:,} mask files) × "
        f"{args.points:,} points; median of {args.repeats}, A B A B"
    )
    for col in ("process", "wall s", "runs (wall s)", "user s", "sys s", "peak MiB", "AP", "AP50", "AP25"):
        table.add_column(col, justify="left" if col == "process" else "right")
    walls = {}
    for (key, rs), scores in zip(runs.items(), (official, ours), strict=True):
        walls[key] = statistics.median(r["wall"] for r in rs)

        def med(field: str, rs: list[dict] = rs) -> float:
            return statistics.median(r[field] for r in rs)

        table.add_row(
            key,
            f"{walls[key]:.2f}",
            " ".join(f"{r['wall']:.2f}" for r in rs),
            f"{med('user'):.2f}",
            f"{med('sys'):.2f}",
            f"{max(r['peak_mib'] for r in rs):.0f}",
            *(f"{v:.10f}" for v in scores),
        )
    a, b = walls.values()
    cpu_a, cpu_b = (statistics.median(r["user"] + r["sys"] for r in rs) for rs in runs.values())
    diff = max(abs(x - y) for x, y in zip(official, ours, strict=True))
    table.add_section()
    table.add_row(
        "speed-up (A / B)", f"{a / b:.1f}×", "", f"CPU {cpu_a / cpu_b:.1f}×", "", "", f"max |Δ| = {diff:.1e}", "", ""
    )
    console = Console(width=max(Console().width, 150))
    console.print(table)
    console.print(f"(generating the case and `data prepare`: {t_gen:.1f} s, not timed)")
    if not diff <= 1e-9:
        console.print("[bold red]AP / AP50 / AP25 differ by more than 1e-9[/]")
        return 1
    return 0


# ------------------------------------------------------------------ in-process


def make_scene(rng: np.random.Generator, n: int, n_inst: int, n_pred: int):
    from freepoint_bench.data.classes import SCANNET_INSTANCE_IDS
    from freepoint_bench.evaluation import Predictions

    ins = np.sort(rng.integers(-1, n_inst, n))
    cls = rng.choice(SCANNET_INSTANCE_IDS, n_inst)
    sem = np.where(ins >= 0, cls[np.maximum(ins, 0)], 1)
    pick = rng.integers(0, n_inst, n_pred)
    masks = ins[None, :] == pick[:, None]
    masks ^= rng.random((n_pred, n)) < 0.002
    labels = np.where(rng.random(n_pred) < 0.8, cls[pick], rng.choice(SCANNET_INSTANCE_IDS, n_pred))
    return (sem, ins), Predictions(masks, labels, rng.random(n_pred).astype(np.float32))


def in_process(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from freepoint_bench.evaluation import evaluate, read_predictions, scannet_spec, write_predictions

    rng = np.random.default_rng(0)
    gts, preds = [], {}
    t0 = time.perf_counter()
    for i in range(args.scenes):
        (sem, ins), p = make_scene(rng, args.points, 40, args.preds)
        gts.append((f"scene{i:04d}_00", sem, ins))
        preds[f"scene{i:04d}_00"] = p
    t_gen = time.perf_counter() - t0
    rows = []
    for agnostic in (False, True):
        t0 = time.perf_counter()
        r = evaluate(gts, preds, scannet_spec(class_agnostic=agnostic))
        rows.append(("class-agnostic" if agnostic else "semantic", time.perf_counter() - t0, r.ap))
    with tempfile.TemporaryDirectory() as tmp:
        name, p = gts[0][0], preds[gts[0][0]]
        t0 = time.perf_counter()
        for _ in range(3):
            write_predictions(tmp, name, p)
        t_write = (time.perf_counter() - t0) / 3
        t0 = time.perf_counter()
        for _ in range(3):
            read_predictions(tmp, name, args.points)
        t_read = (time.perf_counter() - t0) / 3
    table = Table(title=f"evaluator: {args.scenes} scenes × {args.preds} predictions × {args.points:,} points")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    table.add_column("ms / scene", justify="right")
    table.add_column("note")
    per = 1000 / max(args.scenes, 1)
    table.add_row("generate inputs", f"{t_gen:.1f}", f"{t_gen * per:.0f}", "not part of the evaluator")
    for mode, secs, value in rows:
        table.add_row(f"evaluate ({mode})", f"{secs:.2f}", f"{secs * per:.1f}", f"AP = {100 * value:.1f}")
    table.add_row("write (benchmark format)", f"{t_write:.3f}", f"{1000 * t_write:.0f}", f"{args.preds} mask files")
    table.add_row("read (benchmark format)", f"{t_read:.3f}", f"{1000 * t_read:.0f}", "")
    Console().print(table)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == OFFICIAL_MODE:
        official_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=300, help="in-process: scenes")
    ap.add_argument("--preds", type=int, default=100, help="in-process: predictions a scene")
    ap.add_argument("--points", type=int, default=50000, help="points a scene")
    ap.add_argument("--end-to-end", action="store_true", help="whole processes: ScanNet's script vs bench.py")
    ap.add_argument("--scans", type=int, default=50, help="end to end: scans in the submission")
    ap.add_argument("--masks", type=int, default=36, help="end to end: mask files a scan")
    ap.add_argument("--repeats", type=int, default=3, help="end to end: timed runs of each (median)")
    ap.add_argument("--seed", type=int, default=0, help="end to end: seed of the generated case")
    ap.add_argument("--workdir", type=Path, default=None, help="end to end: where the case is written (temp)")
    args = ap.parse_args()
    if args.end_to_end:
        sys.exit(end_to_end(args))
    in_process(args)


if __name__ == "__main__":
    main()
