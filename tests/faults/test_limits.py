"""Thread and process limits: worker counts default from the cores this process may use and never exceed them;
every pool worker limits its thread pools to its share, so workers x threads <= cores."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

import freepoint_bench.parallel as parallel
from freepoint_bench.parallel import available_cores, loader_workers, process_workers

from .conftest import record_figures


def test_available_cores_follow_affinity_and_cgroup_quota(monkeypatch, tmp_path):
    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(parallel, "_CGROUP_CPU_MAX", tmp_path / "absent")
    assert available_cores() == 4
    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(parallel, "_CGROUP_CPU_MAX", quota)
    for text, want in (("max 100000", 4), ("200000 100000", 2), ("150000 100000", 1), ("50000 100000", 1),
                       ("800000 100000", 4), ("garbage", 4)):
        quota.write_text(text + "\n")
        assert available_cores() == want, text
    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda pid: {5})  # e.g. taskset -c 5 / a SLURM cpuset
    assert available_cores() == 1


@pytest.mark.parametrize("cores", [1, 2, 16])
def test_worker_counts_never_oversubscribe(monkeypatch, caplog, cores):
    monkeypatch.setattr(parallel, "available_cores", lambda: cores)
    assert process_workers(None) == cores  # default: one per core
    assert process_workers(None, tasks=3) == min(cores, 3)  # never more workers than tasks
    assert process_workers(1) == 1
    with caplog.at_level(logging.WARNING, logger="freepoint_bench.parallel"):
        assert process_workers(64) == cores
    assert cores == 16 or "oversubscribe" in caplog.text
    assert loader_workers(4) == min(4, cores - 1)  # the training process keeps a core
    assert loader_workers(0) == 0


def test_dataloaders_take_their_workers_from_the_cores(monkeypatch, prepared):
    """The paper preset asks for 4 DataLoader workers; on 2 cores the loaders of FreePoint and of the contrastive
    and supervised baselines start 1."""
    from freepoint_bench.engine.data import GroundTruthTargets, SceneDataModule
    from freepoint_bench.engine.presets import get_preset

    monkeypatch.setattr(parallel, "available_cores", lambda: 2)
    _, store, names = prepared
    preset = get_preset("cpu-small", num_workers=4, accelerator="cpu")
    loader = SceneDataModule(store, names[:2], GroundTruthTargets(), preset).train_dataloader()
    assert loader.num_workers == 1
    root = Path(__file__).resolve().parents[2]
    files = [*(root / "freepoint_bench").rglob("*.py"), *(root / "baselines").rglob("*.py")]
    loaders = [p for p in files if "DataLoader(" in p.read_text()]
    assert len(loaders) >= 3
    unlimited = [p.name for p in loaders if "loader_workers(" not in p.read_text()]
    assert not unlimited, f"DataLoaders whose workers do not go through loader_workers: {unlimited}"


def record_threads(scene):
    """Deep 'features' that record, in the worker computing them, its thread limits (module level: picklable)."""
    from threadpoolctl import threadpool_info

    from freepoint_bench.parallel import thread_budget

    out = Path(os.environ["FAULTS_THREADS_DIR"]) / f"{os.getpid()}-{scene.name.replace('/', '_')}.json"
    out.write_text(json.dumps({"pid": os.getpid(), "budget": thread_budget(),
                               "pools": [p["num_threads"] for p in threadpool_info()],
                               "omp_env": os.environ.get("OMP_NUM_THREADS")}))
    return np.zeros((scene.num_points, 2), dtype=np.float32)


record_threads.cache_key = "faults-record-threads"


@pytest.mark.skipif(available_cores() < 2, reason="one core: no pool is started")
def test_pseudo_label_workers_share_the_cores(prepared, tmp_path, monkeypatch):
    from freepoint_bench.freepoint.config import PseudoLabelConfig
    from freepoint_bench.freepoint.pipeline import run_pseudo_labels

    _, store, names = prepared
    monkeypatch.setenv("FAULTS_THREADS_DIR", str(tmp_path))
    summary = run_pseudo_labels(store, names[:4], PseudoLabelConfig(), None, tmp_path / "labels", workers=None,
                                features_fn=record_threads)
    assert summary["computed"] == 4
    records = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    cores = available_cores()
    workers = {r["pid"] for r in records}
    assert len(records) == 4 and 1 < len(workers) <= cores and os.getpid() not in workers
    share = cores // len(workers)
    for r in records:
        assert r["budget"] == share and r["omp_env"] == str(share) and all(n <= share for n in r["pools"]), r
    record_figures("limits:pseudo-label pool", {"cores": cores, "workers": len(workers), "threads_each": share})
