"""Learning that a test can see (issue 28): from a random start on synthetic rooms in S3DIS's layout, semantic
fine-tuning (`semseg`) beats the best constant predictor and instance segmentation (`insseg`) beats an untrained
model, each by a wide margin in seconds on a CPU, through `bench.py run`.

semseg, measured when written (12 rooms of 3,000 points, 30 epochs, scratch, seed 0; 17 s for the test on 2 cores):
mIoU 29.3%, allAcc 72.5%. The best constant predictor on the same evaluation rooms: mIoU 2.8%, allAcc 31.3%. The
thresholds sit far below the measured values and far above the constant. With the loss's sign flipped
(engine/semantic.py, `loss = -F.cross_entropy(...)`) the cell scored mIoU 0.8% and allAcc 1.0%, so the test
failed.

insseg, measured when written (the same rooms, synthetic-s3dis-50pct-scenes: 5 training rooms, the 2 of Area 5
scored; scratch, the cpu-small preset with 40 epochs, everything else its own): AP / AP50 / AP25 8.2 / 25.0 / 36.1
(seed 0, one thread; 41 s of CPU) and 35.0 / 50.0 / 52.1 (seed 1). The untrained model (lr 1e-12, so the weights
stay at their initialisation while BatchNorm's statistics still settle) scores 0.0 / 0.0 / 0.0 after 1 epoch and
after 40. What the recipe needs: the preset's 100 queries. With num_queries=20 (the demo's) the cell learns far
slower: AP50 7.1 after 40 epochs, 7.7 after 100; with 100 queries 20 epochs give AP50 3.0 (AP25 24.9), 60 give
34.9. max_points is moot here (3,000-point rooms, the preset crops above 20,000). With the criterion's total
loss negated (models/criterion.py's SetCriterion returning `-loss`, patched in by a pytest plugin; the loss fell
to -1.2e6) the cell scored AP / AP50 / AP25 0.0 / 0.0 / 0.0, so the test failed. The test
took 91 s with the machine's load at 9-13 on 2 cores (other jobs); its cells' CPU time, one thread: 6 s untrained,
41 s trained."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from freepoint_bench.data import catalogue
from freepoint_bench.data.synthetic import SyntheticConfig, write_synthetic_s3dis
from freepoint_bench.results import ResultRecord, read_result

SEMSEG = "synthetic-s3dis-50pct-scenes-semseg"
INSSEG = "synthetic-s3dis-50pct-scenes"


def _rooms(tmp_path):
    root = tmp_path / "s3dis"
    write_synthetic_s3dis(root, 12, config=SyntheticConfig(num_points=3000))
    return root


def _run(bench_cli, tmp_path, root, protocol: str, name: str, *sets: str) -> ResultRecord:
    """Returns the record of scratch, seed 0, under `protocol` with the fine-tuning fields `sets` (key=value),
    run through `bench.py run` into a results store of its own (`name`)."""
    results = tmp_path / name
    args = [a for kv in sets for a in ("--set", kv)]
    code, _, err = bench_cli("run", "--methods", "scratch", "--protocols", protocol, "--seeds", "0", "--root", root,
                             "--results", results, "--checkpoints", tmp_path / "ckpt", "--runs", tmp_path / "runs",
                             "--cache", tmp_path / "cache", *args)
    assert code == 0, err
    return read_result(results / protocol / "scratch" / "seed-0" / "result.json")


def _best_constant(root, names) -> tuple[float, float]:
    """Returns (mIoU, allAcc) of predicting the most frequent class of the labelled points of `names` everywhere."""
    reader = catalogue.get("s3dis").open_reader()
    labels = np.concatenate([reader.read_scene(root, n).semantic for n in names])
    counts = np.bincount(labels[labels >= 0])
    acc = counts.max() / counts.sum()
    return acc / np.count_nonzero(counts), acc  # IoU of the constant class is its share; every other class: 0


def test_semseg_from_scratch_beats_the_best_constant_predictor(bench_cli, tmp_path):
    root = _rooms(tmp_path)
    record = _run(bench_cli, tmp_path, root, SEMSEG, "results", "epochs=30", "max_points=none")
    const_miou, const_acc = _best_constant(root, record.eval_scenes)
    assert const_miou < 0.05 and const_acc < 0.4  # the data are what the thresholds assume
    assert record.scores["miou"] > 4 * const_miou, (record.scores, const_miou)
    assert record.scores["all_acc"] > const_acc + 0.2, (record.scores, const_acc)


@pytest.fixture
def one_thread():
    """torch on one thread while the test runs: the insseg cell's numbers move with the thread count (float sums in
    another order; num_queries=20, 40 epochs: AP50 0.0 on two threads, 7.1 on one), and its thresholds were chosen
    from one-thread runs, which this fixture reproduces bit for bit on any machine's core count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_insseg_from_scratch_beats_an_untrained_model(bench_cli, tmp_path, one_thread):
    root = _rooms(tmp_path)
    # untrained: the same model and evaluation with the weights left where they start (1 epoch at lr 1e-12; 40
    # such epochs score the same 0.0)
    untrained = _run(bench_cli, tmp_path, root, INSSEG, "untrained", "epochs=1", "lr=1e-12")
    trained = _run(bench_cli, tmp_path, root, INSSEG, "trained", "epochs=40")
    assert untrained.scores["ap50"] < 0.02, untrained.scores  # the evaluation gives chance nothing
    assert trained.scores["ap50"] > 0.1, (trained.scores, untrained.scores)
    assert trained.scores["ap50"] > untrained.scores["ap50"] + 0.08, (trained.scores, untrained.scores)
