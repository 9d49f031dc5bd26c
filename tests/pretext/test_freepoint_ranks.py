"""FreePoint's pseudo labels under several ranks (srun, torchrun, Lightning's launcher): rank 0 computes them,
the other ranks compute nothing, wait for its marker and read the same labels; a failed or silent rank 0 is one
clear error naming the marker."""

from __future__ import annotations

import json
import multiprocessing
import threading

import numpy as np
import pytest

import freepoint_bench.pretext.freepoint as fp
from freepoint_bench.data.scene import Scene
from freepoint_bench.errors import ConfigError, DataError
from freepoint_bench.freepoint.config import PseudoLabelConfig
from freepoint_bench.freepoint.pipeline import load_pseudo_labels
from freepoint_bench.pretext.base import get_method

SLURM = {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "2"}


def room(seed: int) -> Scene:
    """Returns a floor with two coloured boxes."""
    rng = np.random.default_rng(seed)
    xyz = [np.c_[rng.uniform(0, 3, (1200, 2)), np.zeros(1200)]]
    rgb = [np.full((1200, 3), 0.5)]
    for k in range(2):
        lo = np.array([0.4 + 1.3 * k, 0.8, 0.0])
        xyz.append(lo + rng.uniform(0, 0.6, (500, 3)))
        rgb.append(np.tile(rng.uniform(0, 1, 3), (500, 1)))
    return Scene(name=f"room{seed}", xyz=np.concatenate(xyz), rgb=np.concatenate(rgb))


class Store:
    def __init__(self, scenes):
        self.scenes = {s.name: s for s in scenes}

    def load(self, name):
        return self.scenes[name]


NAMES = ["room0", "room1"]
PSEUDO = PseudoLabelConfig()


def read_labels(label_dir) -> dict:
    return {(n, s): load_pseudo_labels(label_dir, n, s).tolist() for n in NAMES for s in PSEUDO.sigmas}


def label_as_this_process(label_dir, queue) -> None:
    """In a spawned process whose environment names its rank: cache_pseudo_labels at Lightning's rank, counting
    run_pseudo_labels calls; puts ("ready", rank) first, then (rank, calls, labels it reads)."""
    from pytorch_lightning.utilities import rank_zero_only

    calls = []
    real = fp.run_pseudo_labels

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    fp.run_pseudo_labels = counted
    queue.put(("ready", rank_zero_only.rank))
    fp.cache_pseudo_labels(Store([room(0), room(1)]), NAMES, PSEUDO, label_dir, rank=rank_zero_only.rank,
                           timeout_s=120, poll_s=0.05)
    queue.put((rank_zero_only.rank, len(calls), read_labels(label_dir)))


@pytest.mark.slow  # two spawned interpreters import torch and Lightning one after the other
def test_under_srun_only_rank_zero_computes_and_rank_one_reads_the_same_labels(tmp_path, monkeypatch):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = []
    for rank in (1, 0):  # rank 1 first: it must wait for rank 0, not find the labels done
        for key, value in {**SLURM, "SLURM_PROCID": str(rank)}.items():
            monkeypatch.setenv(key, value)
        proc = ctx.Process(target=label_as_this_process, args=(tmp_path, queue))
        proc.start()
        procs.append(proc)
        assert queue.get(timeout=120) == ("ready", rank)  # Lightning read this process's rank from SLURM_PROCID
    results = {}
    for _ in procs:
        rank, calls, labels = queue.get(timeout=300)
        results[rank] = (calls, labels)
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    assert results[0][0] == 1 and results[1][0] == 0  # rank 1 computed nothing
    assert results[1][1] == results[0][1]
    (marker,) = tmp_path.glob("ready-*.json")
    state = json.loads(marker.read_text())
    assert state["status"] == "done" and state["done"] == state["total"] == 2
    assert state["launch"] == "SLURM_JOB_ID=4242,SLURM_STEP_ID=0"


def test_rank_one_waits_for_rank_zero_in_the_same_process(tmp_path, monkeypatch):
    calls = []
    real = fp.run_pseudo_labels
    monkeypatch.setattr(fp, "run_pseudo_labels", lambda *a, **k: calls.append(threading.current_thread().name)
                        or real(*a, **k))
    got: dict = {}

    def rank_one():
        fp.cache_pseudo_labels(Store([]), NAMES, PSEUDO, tmp_path, rank=1, timeout_s=60, poll_s=0.02)
        got["labels"] = read_labels(tmp_path)

    waiter = threading.Thread(target=rank_one, name="rank1")
    waiter.start()
    waiter.join(timeout=0.5)
    assert waiter.is_alive()  # nothing to read yet: it waits
    events = []
    fp.cache_pseudo_labels(Store([room(0), room(1)]), NAMES, PSEUDO, tmp_path, rank=0,
                           progress=lambda *a: events.append(a))
    waiter.join(timeout=60)
    assert calls == ["MainThread"] and got["labels"] == read_labels(tmp_path)
    assert [e[:3] for e in events] == [("pseudo-labels", 1, 2), ("pseudo-labels", 2, 2)]


def test_a_failing_rank_zero_stops_the_others_with_the_marker_named(tmp_path, monkeypatch):
    errors: list[Exception] = []
    # Rank 1 must read the marker's state before rank 0 writes "failed": without a launch token a state already there
    # when a rank starts waiting may be an earlier launch's, so it counts only once rewritten (the library's rule).
    # Starting rank 0 at once let a slow thread start read the failed state first and wait out its timeout.
    looked = threading.Event()
    real = fp._read_marker

    def read_marker(marker):
        state = real(marker)
        if threading.current_thread().name == "rank1":
            looked.set()
        return state

    monkeypatch.setattr(fp, "_read_marker", read_marker)

    def rank_one():
        try:
            fp.cache_pseudo_labels(Store([]), NAMES, PSEUDO, tmp_path, rank=1, timeout_s=60, poll_s=0.02)
        except DataError as e:
            errors.append(e)

    waiter = threading.Thread(target=rank_one, name="rank1")
    waiter.start()
    assert looked.wait(timeout=30)

    def refuse():
        raise ConfigError("runs/fp already holds a pretraining run; pass resume")

    with pytest.raises(ConfigError):
        fp.cache_pseudo_labels(Store([room(0)]), NAMES, PSEUDO, tmp_path, rank=0, prepare=refuse)
    waiter.join(timeout=60)
    marker = fp.labels_marker(tmp_path, NAMES, PSEUDO)
    assert len(errors) == 1
    assert str(errors[0]) == (f"{marker}: rank 0 failed computing the pseudo labels (ConfigError: runs/fp already "
                              "holds a pretraining run; pass resume); fix that (rank 0's log has it) and start the "
                              "run again")


def test_a_silent_rank_zero_or_another_launchs_marker_times_out(tmp_path, monkeypatch):
    marker = fp.labels_marker(tmp_path, NAMES, PSEUDO)
    with pytest.raises(DataError, match=f"{marker}: rank 1 waited 0s .* no progress \\(last state: nothing\\)"):
        fp.cache_pseudo_labels(Store([]), NAMES, PSEUDO, tmp_path, rank=1, timeout_s=0.3, poll_s=0.02)
    # a finished marker of an earlier SLURM job: this job's rank 0 may be relabelling, so rank 1 does not trust it
    for key, value in SLURM.items():
        monkeypatch.setenv(key, value)
    marker.write_text(json.dumps({"launch": "SLURM_JOB_ID=1,SLURM_STEP_ID=0", "status": "done", "done": 2,
                                  "total": 2}))
    with pytest.raises(DataError, match="last state: done 2/2"):
        fp.cache_pseudo_labels(Store([]), NAMES, PSEUDO, tmp_path, rank=1, timeout_s=0.3, poll_s=0.02)
    # the same job's marker is trusted at once
    marker.write_text(json.dumps({"launch": fp.launch_token(), "status": "done", "done": 2, "total": 2}))
    assert fp.cache_pseudo_labels(Store([]), NAMES, PSEUDO, tmp_path, rank=1, timeout_s=0.3, poll_s=0.02) == marker


def test_the_marker_is_keyed_by_scenes_and_config(tmp_path):
    marker = fp.labels_marker(tmp_path, NAMES, PSEUDO)
    assert marker.parent == tmp_path and marker.name.startswith("ready-")
    assert fp.labels_marker(tmp_path, NAMES[::-1], PSEUDO) == marker
    assert fp.labels_marker(tmp_path, NAMES[:1], PSEUDO) != marker
    assert fp.labels_marker(tmp_path, NAMES, PSEUDO.with_overrides({"sigma_low": 0.8})) != marker


def test_pretrain_on_a_nonzero_rank_neither_labels_nor_writes_the_run(tmp_path, monkeypatch):
    from pytorch_lightning.utilities import rank_zero_only

    def computed(*args, **kwargs):
        raise AssertionError("rank 1 computed pseudo labels")

    monkeypatch.setattr(fp, "run_pseudo_labels", computed)
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    method = get_method("freepoint")
    with pytest.raises(DataError, match="rank 1 waited 0s for rank 0's pseudo labels"):
        method.pretrain(Store([room(0)]), method.default_config("cpu-small"), tmp_path / "run", names=["room0"],
                        label_wait_s=0.2)
    assert not (tmp_path / "run" / "run.json").exists()
