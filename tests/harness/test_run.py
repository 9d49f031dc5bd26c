"""The harness end to end on synthetic rooms in S3DIS's raw layout: run, finetune, resume, refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from freepoint_bench.data.synthetic import SyntheticConfig, write_synthetic_s3dis
from freepoint_bench.errors import CheckpointError, DataError
from freepoint_bench.harness.cells import Cell, cell_lock, run_cell
from freepoint_bench.harness.protocol import PROTOCOLS_DIR, group_of, load_protocol, sha256_file
from freepoint_bench.harness.run import RunOptions, Task, cell_config, open_protocol_data, run_task
from freepoint_bench.results import ResultRecord, read_result, write_result

pytestmark = pytest.mark.slow

PROTOCOLS = ("synthetic-s3dis-20pct-masks", "synthetic-s3dis-50pct-scenes")
# a tiny fine-tune: one epoch, few queries, whole (small) rooms
FT = ["--set", "epochs=1", "--set", "num_queries=12", "--set", "batch_size=5", "--set", "max_points=null"]


@pytest.fixture(scope="module")
def s3dis_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("s3dis")
    write_synthetic_s3dis(root, 12, seed=1, config=SyntheticConfig(num_points=1500))
    return root


@pytest.fixture()
def workspace(tmp_path, s3dis_root):
    """A private protocols folder (a stand-in for the shipped one: runs freeze splits into <results>/splits) and
    output folders."""
    protocols = tmp_path / "protocols"
    (protocols / "splits").mkdir(parents=True)
    for name in PROTOCOLS:
        shutil.copy(PROTOCOLS_DIR / f"{name}.toml", protocols)
    return {"root": s3dis_root, "protocols": protocols, "results": tmp_path / "results",
            "checkpoints": tmp_path / "ckpt", "runs": tmp_path / "runs", "cache": tmp_path.parent / "cache-shared"}


def where(ws) -> list:
    return ["--root", ws["root"], "--protocols-dir", ws["protocols"], "--results", ws["results"],
            "--checkpoints", ws["checkpoints"], "--runs", ws["runs"], "--cache", ws["cache"]]


def test_run_two_methods_two_protocols_two_seeds(bench_cli, workspace, read_only, contents):
    ws = workspace
    args = ["run", "--methods", "freepoint,scratch", "--protocols", ",".join(PROTOCOLS), "--seeds", "0", "1",
            *where(ws), *FT, "--pretrain-set", "epochs1=1", "--pretrain-set", "epochs2=1",
            "--pretrain-set", "num_queries=12", "--pretrain-set", "max_points=null"]
    with read_only(ws["protocols"]) as before:  # the splits are frozen from the data beside the results
        code, out, err = bench_cli(*args)
    assert code == 0, err
    assert contents(ws["protocols"]) == before
    splits = ws["results"] / "splits"
    assert sorted(contents(splits)) == sorted(f"{p}.json{s}" for p in PROTOCOLS for s in ("", ".sha256"))
    results = sorted(ws["results"].glob("*/*/seed-*/result.json"))
    assert len(results) == 8
    hashes = {}
    for path in results:
        doc = read_result(path)
        protocol, method, seed = path.parts[-4], path.parts[-3], int(path.parts[-2].split("-")[1])
        assert (doc.protocol, doc.method, doc.seed) == (protocol, method, seed)
        assert doc.protocol_hash == load_protocol(protocol, ws["protocols"]).content_hash()
        assert len(doc.split_sha256) == 64 and len(doc.checkpoint["sha256"]) == 64
        assert set(doc.metrics) == {"ap", "ap50", "ap25", "per_class"} and len(doc.metrics["per_class"]) == 13
        assert all(group_of(s) == "Area_5" for s in doc.eval_scenes)
        for fold in doc.folds:
            assert fold["eval_scenes"] == list(doc.eval_scenes)
        train = json.loads((path.parent / "work" / "fold-0" / "fold.json").read_text())["train_scenes"]
        assert train and not any(group_of(s) == "Area_5" for s in train)  # Area 5 is never trained on
        hashes.setdefault(protocol, set()).add(doc.split_sha256)
    assert all(len(v) == 1 for v in hashes.values())  # every cell of a protocol trained on the same split
    assert hashes == {p: {sha256_file(splits / f"{p}.json")} for p in PROTOCOLS}
    # a second run finds every cell finished and computes nothing
    code, out, _ = bench_cli(*args)
    assert code == 0 and out.count("skipped") == 8


def test_finetune_resumes_an_interrupted_run(workspace):
    ws = workspace
    opts = RunOptions(results=ws["results"], checkpoints=ws["checkpoints"], cache=ws["cache"], runs=ws["runs"],
                      protocols_dir=ws["protocols"], root=ws["root"],
                      overrides={"epochs": 3, "num_queries": 12, "batch_size": 5, "max_points": None})
    task = Task("synthetic-s3dis-50pct-scenes", "scratch", 0)

    class Killed(Exception):
        pass

    def interrupt(stage: str, done: int, total: int, info: str) -> None:
        # Lightning writes an epoch's checkpoint after the other callbacks' epoch end: dying at the end of
        # epoch 2 leaves epoch 1's checkpoint
        if stage.endswith("train") and done == 2:
            raise Killed

    with pytest.raises(Killed):
        run_task(task, opts, progress=interrupt)
    split = ws["results"] / "splits" / f"{task.protocol}.json"  # frozen by the first try
    frozen = split.read_bytes()
    cell_dir = ws["results"] / task.protocol / "scratch" / "seed-0"
    assert not (cell_dir / "result.json").exists()
    assert (cell_dir / "work" / "fold-0" / "lightning" / "last.ckpt").is_file()
    epochs_seen = []
    status, path = run_task(task, opts, progress=lambda s, d, t, i: epochs_seen.append(d) if "train" in s else None)
    assert status == "done" and read_result(path).config["epochs"] == 3
    assert split.read_bytes() == frozen and read_result(path).split_sha256 == sha256_file(split)  # read back
    assert epochs_seen == [2, 3]  # only the missing epochs were trained
    # a scored fold keeps no resume checkpoint (34C + AdamW: ~450 MB a cell at the paper preset), only its record
    fold = cell_dir / "work" / "fold-0"
    assert (fold / "fold.json").is_file() and not list((fold / "lightning").glob("*.ckpt"))
    # another process holding the cell computes it; this one reports it busy
    (cell_dir / "result.json").unlink()
    with cell_lock(cell_dir) as mine:
        assert mine
        spec = load_protocol(task.protocol, ws["protocols"])
        store, names = open_protocol_data(spec, opts)
        assert run_cell(Cell(spec, "scratch", 0, (None,)), store, names, cell_config(spec, opts), ws["results"],
                        protocols_dir=ws["protocols"])[0] == "busy"


def test_checkpoints_of_another_architecture_or_that_saw_eval_scenes_are_refused(workspace, tmp_path):
    from freepoint_bench.engine.checkpoints import data_description, save_model_checkpoint
    from freepoint_bench.engine.module import segmenter_config
    from freepoint_bench.engine.presets import get_preset
    from freepoint_bench.models.backbone import Res16UNet

    ws = workspace
    opts = RunOptions(results=ws["results"], checkpoints=ws["checkpoints"], cache=ws["cache"], runs=ws["runs"],
                      protocols_dir=ws["protocols"], root=ws["root"], overrides={"epochs": 1, "num_queries": 12})
    spec = load_protocol("synthetic-s3dis-50pct-scenes", ws["protocols"])
    store, names = open_protocol_data(spec, opts)
    other = Res16UNet(segmenter_config(get_preset("cpu-small", backbone="tiny")).backbone)
    wrong = save_model_checkpoint(tmp_path / "tiny.ckpt", other, {"method": "pointcontrast", "data": {}})
    opts.given = {"pointcontrast": [wrong]}
    mismatch = r"holds another backbone than .* preset='tiny' here, 'small' for fine-tuning.*: --set backbone=tiny$"
    with pytest.raises(CheckpointError, match=mismatch):
        run_task(Task(spec.name, "pointcontrast", 0), opts)
    right = Res16UNet(segmenter_config(get_preset("cpu-small")).backbone)
    # the same architecture trained on Pointcept's colour + normals: refused before training, naming the setting
    normals = save_model_checkpoint(tmp_path / "normals.ckpt", right, {
        "method": "pointcontrast", "data": {}, "input": {"features": ["color", "normal"], "color_range": [-1, 1]}})
    opts.given = {"pointcontrast": [normals]}
    with pytest.raises(CheckpointError, match=r"other input features .*: --set input_features=rgb\+normal$"):
        run_task(Task(spec.name, "pointcontrast", 0), opts)
    leaky = save_model_checkpoint(tmp_path / "leaky.ckpt", right, {
        "method": "supervised", "data": data_description(store, [n for n in names if n.startswith("Area_5/")])})
    opts.given = {"supervised": [leaky]}
    with pytest.raises(CheckpointError, match="evaluation scenes"):
        run_task(Task(spec.name, "supervised", 0), opts)


def test_one_line_errors(bench_cli, workspace, tmp_path):
    ws = workspace
    code, _, err = bench_cli("finetune", "--protocol", "s3dis-15pct-masks", "--method", "scratch")
    assert code == 2 and "known protocols" in err
    empty = tmp_path / "no-area5"
    for area in ("Area_1", "Area_2", "Area_3", "Area_4", "Area_6"):
        shutil.copytree(Path(ws["root"]) / area, empty / area)
    code, _, err = bench_cli("finetune", "--protocol", "synthetic-s3dis-50pct-scenes", "--method", "scratch",
                       *where({**ws, "root": empty}), *FT)
    assert code == 2 and "evaluation groups ['Area_5']" in err
    with pytest.raises(DataError):
        spec = load_protocol("synthetic-s3dis-50pct-scenes", ws["protocols"])
        open_protocol_data(spec, RunOptions(root=tmp_path / "missing", cache=ws["cache"]))
    # a finished cell of another recipe is not passed off as this one's
    spec = load_protocol("synthetic-s3dis-50pct-scenes", ws["protocols"])
    opts = RunOptions(results=ws["results"], cache=ws["cache"], protocols_dir=ws["protocols"], root=ws["root"])
    done = ws["results"] / spec.name / "scratch" / "seed-0" / "result.json"
    done.parent.mkdir(parents=True, exist_ok=True)
    write_result(done, ResultRecord(spec.name, spec.content_hash(), "0" * 64, "scratch", 0,
                                    {"ap": None, "ap50": None, "ap25": None},
                                    config=cell_config(spec, RunOptions(overrides={"epochs": 99})).model_dump(
                                        mode="json")))
    from freepoint_bench.errors import ConfigError

    with pytest.raises(ConfigError, match="finished with another fine-tuning config"):
        run_task(Task(spec.name, "scratch", 0), opts)


def test_slurm_launcher_runs_each_cell_as_a_submitit_job(workspace, tmp_path):
    from freepoint_bench.harness.run import expand, submit_slurm
    from freepoint_bench.parallel import take_shard

    ws = workspace
    opts = RunOptions(results=ws["results"], checkpoints=ws["checkpoints"], cache=ws["cache"], runs=ws["runs"],
                      protocols_dir=ws["protocols"], root=ws["root"],
                      overrides={"epochs": 1, "num_queries": 12, "batch_size": 5, "max_points": None})
    tasks = expand(["scratch"], ["synthetic-s3dis-50pct-scenes"], [3, 4])
    halves = take_shard(tasks, 0, 2), take_shard(tasks, 1, 2)
    assert not set(halves[0]) & set(halves[1]) and sorted(halves[0] + halves[1], key=lambda t: t.seed) == tasks
    # submitit's debug executor runs the job function in this process: the same code path as on a cluster
    pre_jobs, jobs = submit_slurm(tasks[:1], opts, tmp_path / "slurm", {"cluster": "debug", "timeout_min": 5})
    assert pre_jobs == []  # scratch pretrains nothing
    status, path = jobs[0].result().split(" ", 1)
    assert status == "done" and read_result(path).seed == 3


def test_checkpoint_given_by_index_id(workspace, tmp_path):
    from freepoint_bench.engine.checkpoints import find_backbone
    from freepoint_bench.errors import ConfigError
    from freepoint_bench.pretext.base import get_method

    scratch = get_method("scratch")
    result = scratch.pretrain(None, scratch.default_config("cpu-small"), tmp_path / "run", names=[],
                              checkpoints_dir=tmp_path / "ckpt")
    assert find_backbone(result.metadata["id"], tmp_path / "ckpt") == Path(result.backbone).resolve()
    with pytest.raises(ConfigError, match="no entry"):
        find_backbone("freepoint-nothing", tmp_path / "ckpt")


def test_a_deep_features_checkpoint_that_does_not_exist_is_refused_before_anything_trains(workspace, tmp_path):
    from freepoint_bench.errors import ConfigError
    from freepoint_bench.harness.run import check_tasks

    ws = workspace
    opts = RunOptions(results=ws["results"], cache=ws["cache"], protocols_dir=ws["protocols"], root=ws["root"],
                      checkpoints=tmp_path / "ckpt", runs=tmp_path / "runs",
                      pretrain_overrides={"deep_features": "csc-nope"})
    with pytest.raises(ConfigError, match=r"freepoint: --pretrain-set deep_features=csc-nope: no such file"):
        check_tasks([Task("synthetic-s3dis-50pct-scenes", "freepoint", 0)], opts)
    assert not (tmp_path / "runs").exists()
