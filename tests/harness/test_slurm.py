"""`run --launcher slurm`: resources per job, and pretraining as jobs of its own that the cells wait for."""

from __future__ import annotations

import shutil

import pytest

from freepoint_bench.errors import ConfigError
from freepoint_bench.harness.protocol import PROTOCOLS_DIR
from freepoint_bench.harness.run import RunOptions, Task, expand, slurm_resources, submit_slurm

PROTOCOLS = ("synthetic-s3dis-20pct-masks", "synthetic-s3dis-50pct-scenes")


class Recorder:
    """Stands in for submitit.AutoExecutor: records the parameters of every job array it is given."""

    arrays: list[dict] = []

    def __init__(self, folder: str, cluster: str | None = None) -> None:
        self.cluster, self.params = "slurm", {}

    def update_parameters(self, **params) -> None:
        self.params.update(params)

    def map_array(self, fn, *args) -> list:
        first = len([job for a in Recorder.arrays for job in a["jobs"]])
        jobs = [type("Job", (), {"job_id": f"{100 + first + i}"})() for i in range(len(args[0]))]
        Recorder.arrays.append({"fn": fn.__name__, "args": args, "params": dict(self.params), "jobs": jobs})
        return jobs


@pytest.fixture()
def recorded(monkeypatch):
    import submitit

    Recorder.arrays = []
    monkeypatch.setattr(submitit, "AutoExecutor", Recorder)
    return Recorder.arrays


@pytest.fixture()
def opts(tmp_path):
    root = tmp_path / "s3dis"
    for area in range(1, 7):  # names are all a submission reads of the data
        (root / f"Area_{area}" / f"office_{area}" / "Annotations").mkdir(parents=True)
    protocols = tmp_path / "protocols"
    (protocols / "splits").mkdir(parents=True)
    for name in PROTOCOLS:
        shutil.copy(PROTOCOLS_DIR / f"{name}.toml", protocols)
    return RunOptions(root=root, protocols_dir=protocols, results=tmp_path / "results", runs=tmp_path / "runs",
                      cache=tmp_path / "cache")


def test_cells_wait_for_their_pretraining_job(recorded, opts, tmp_path):
    tasks = expand(["freepoint", "pointcontrast", "scratch"], PROTOCOLS, [0, 1])
    resources = {"slurm_partition": "gpu", "timeout_min": 60, "gpus_per_node": 1, "cpus_per_task": 8, "mem_gb": 64}
    pre_jobs, cell_jobs = submit_slurm(tasks, opts, tmp_path / "slurm", resources)
    pre, *cells = recorded
    # one pretraining job per method: both protocols train on the same rooms, every seed shares it
    assert pre["fn"] == "_pretrain_job" and [t.method for t in pre["args"][0]] == ["freepoint", "pointcontrast"]
    assert pre["params"]["name"] == "freepoint-bench-pretrain" and not pre["params"]["slurm_additional_parameters"]
    assert len(pre_jobs) == 2 and len(cell_jobs) == len(tasks) == 12
    job_of = dict(zip((t.method for t in pre["args"][0]), (j.job_id for j in pre_jobs), strict=True))
    waits = {}
    for array in cells:
        assert array["fn"] == "_job" and array["params"]["name"] == "freepoint-bench"
        for key, value in resources.items():
            assert array["params"][key] == value and pre["params"][key] == value
        for task in array["args"][0]:
            waits[task] = array["params"]["slurm_additional_parameters"].get("dependency")
    assert waits[Task(PROTOCOLS[0], "scratch", 1)] is None  # nothing to wait for
    assert waits[Task(PROTOCOLS[1], "freepoint", 0)] == f"afterok:{job_of['freepoint']}"
    assert waits[Task(PROTOCOLS[0], "pointcontrast", 1)] == f"afterok:{job_of['pointcontrast']}"
    assert len(waits) == 12


def test_a_cell_that_could_not_run_submits_nothing(recorded, opts, tmp_path):
    tasks = [Task(PROTOCOLS[0], "supervised", 0)]  # no labelled pretraining data of its own
    with pytest.raises(ConfigError, match="supervised pretraining needs labelled data.*nothing submitted"):
        submit_slurm(tasks, opts, tmp_path / "slurm", {"cluster": "slurm"})
    assert recorded == []


def test_slurm_resources_from_the_command_line(bench_cli, recorded, opts, tmp_path):
    args = ["run", "--methods", "scratch", "--protocols", PROTOCOLS[0], "--root", opts.root, "--protocols-dir",
            opts.protocols_dir, "--results", opts.results, "--launcher", "slurm", "--gpus", "2"]
    code, out, err = bench_cli(*args)
    assert code == 0, err
    assert recorded[0]["params"]["cpus_per_task"] == 16 and recorded[0]["params"]["mem_gb"] == 64
    assert "submitted 0 pretraining jobs and 1 cell jobs" in out
    code, out, err = bench_cli(*args, "--cpus-per-task", "6", "--mem", "200GB")
    assert code == 0 and (recorded[-1]["params"]["cpus_per_task"], recorded[-1]["params"]["mem_gb"]) == (6, 200)
    code, _, err = bench_cli(*args, "--mem", "64M")
    assert code == 2 and "--mem '64M': give whole gigabytes" in err


def test_slurm_resources_size_each_job():
    assert slurm_resources("gpu", 90, 2, None, " 64gb") == {"slurm_partition": "gpu", "timeout_min": 90,
                                                           "gpus_per_node": 2, "cpus_per_task": 16, "mem_gb": 64}
    assert slurm_resources(None, 60, 0, None, "8")["cpus_per_task"] == 8  # a CPU-only job still loads data
    assert slurm_resources(None, 60, 4, 6, "200G")["cpus_per_task"] == 6
    for bad in ("64M", "0", "1.5G", ""):
        with pytest.raises(ConfigError, match="--mem .*: give whole gigabytes"):
            slurm_resources(None, 60, 1, None, bad)
