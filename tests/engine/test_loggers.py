"""Experiment trackers (`--logger`): what each writes and where, for a pretraining stage and a fine-tuning cell,
an interrupted stage resuming into the same tracker run, and one-line refusals of an unknown logger or a missing
package. The trackers' logs are checked against each stage's own CSV log, which Lightning fills independently."""

from __future__ import annotations

import csv
import shutil
import sys
from collections import Counter
from pathlib import Path

import pytest
from stores import MemoryStore

from freepoint_bench.data.synthetic import SyntheticConfig, generate_room, write_synthetic_s3dis
from freepoint_bench.engine.loggers import EXTRA, KINDS, Tracker, make_logger, make_tracker
from freepoint_bench.engine.presets import get_preset
from freepoint_bench.engine.trainer import make_trainer
from freepoint_bench.errors import ConfigError
from freepoint_bench.harness.protocol import PROTOCOLS_DIR
from freepoint_bench.pretext.base import get_method

PROTOCOL = "synthetic-s3dis-50pct-scenes"


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


# the trackers the tests write with: csv always; tensorboard where it is installed (the `trackers` extra)
tensorboard_only = pytest.mark.skipif(not _has_tensorboard(), reason="tensorboard is not installed (the trackers "
                                                                      "extra: pip install -e '.[trackers]')")


# ---------------------------------------------------------------------------------------------- refusals


def test_an_unknown_logger_is_one_line(bench_cli):
    with pytest.raises(ConfigError) as err:
        make_tracker("comet")
    assert str(err.value) == f"unknown logger 'comet'; choose one of {', '.join(KINDS)}"
    for command in (["pretrain", "--method", "depthcontrast", "--dataset", "synthetic"],
                    ["finetune", "--protocol", PROTOCOL, "--method", "scratch"],
                    ["run", "--methods", "scratch", "--protocols", PROTOCOL]):
        code, _, err_text = bench_cli(*command, "--logger", "comet")
        assert code == 2 and "unknown logger 'comet'" in err_text, command


@pytest.mark.parametrize(("kind", "modules"), [("tensorboard", ["tensorboard", "tensorboardX"]), ("wandb", ["wandb"]),
                                                ("mlflow", ["mlflow"])])
def test_a_missing_package_is_one_line_naming_the_extra(kind, modules, monkeypatch, bench_cli):
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # `import module` raises ImportError
    with pytest.raises(ConfigError) as err:
        make_tracker(kind)
    assert str(err.value) == f"--logger {kind} needs the {' or '.join(modules)} package: {EXTRA}"
    assert "\n" not in str(err.value) and "freepoint-bench[trackers]" in str(err.value)
    code, _, err_text = bench_cli("pretrain", "--method", "depthcontrast", "--dataset", "synthetic", "--logger", kind)
    assert code == 2 and "pip install 'freepoint-bench[trackers]'" in err_text


def test_the_default_keeps_the_stage_csv_log_alone(tmp_path):
    """--logger csv (the default) adds nothing: the trainer logs to <stage>/logs/version_<n> as it always did."""
    from pytorch_lightning.loggers import CSVLogger

    assert Tracker().logger(tmp_path, "run", "train") is None
    trainer = make_trainer(get_preset("cpu-small"), tmp_path, max_epochs=1, enable_progress_bar=False)
    (logger,) = trainer.loggers
    assert isinstance(logger, CSVLogger) and Path(logger.log_dir) == tmp_path / "logs" / "version_0"


def test_only_rank_zero_gets_a_tracker(tmp_path, monkeypatch):
    from pytorch_lightning.utilities import rank_zero_only

    tracker = make_tracker("csv", tmp_path)
    assert tracker.logger(tmp_path, "run", "train") is not None
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    assert tracker.logger(tmp_path, "run", "train") is None


# ---------------------------------------------------------------------------------------------- what they write


def csv_events(paths: list[Path]) -> Counter:
    """Returns Counter of (metric, step, value rounded to 1e-5) over the rows of Lightning CSV logs."""
    out: Counter = Counter()
    for path in paths:
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                step = int(row.pop("step"))
                out.update((k, step, round(float(v), 5)) for k, v in row.items() if v != "")
    return out


def tensorboard_events(folder: Path) -> Counter:
    """Returns Counter of (tag, step, value rounded to 1e-5) of every scalar in the event files of `folder`."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    out: Counter = Counter()
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in LegacyEventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    out[(value.tag, event.step, round(value.simple_value, 5))] += 1
    return out


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def rooms():
    return MemoryStore([generate_room(seed, SyntheticConfig(num_points=3000), name=f"synth_{seed:04d}")
                        for seed in (0, 1)])


def interrupted_and_resumed(rooms, run: Path, tracker: Tracker) -> None:
    """Pretrains depthcontrast 3 epochs in `run`, killed at the end of epoch 2 (its checkpoint is epoch 1's), then
    resumed: the stage logs from two starts."""
    method = get_method("depthcontrast")
    config = method.default_config("cpu-small", epochs=3)

    def die(stage: str, done: int, total: int, info: str) -> None:
        if done == 2:
            raise Killed

    with pytest.raises(Killed):
        method.pretrain(rooms, config, run, checkpoints_dir=run.parent / "ckpt", progress=die, tracker=tracker)
    method.pretrain(rooms, config, run, checkpoints_dir=run.parent / "ckpt", resume=True, tracker=tracker)


@pytest.mark.slow
def test_a_pretraining_stage_logs_to_a_csv_tracker_folder_one_version_per_start(rooms, tmp_path):
    run, logs = tmp_path / "depthcontrast-synthetic", tmp_path / "tracked"
    interrupted_and_resumed(rooms, run, make_tracker("csv", logs))
    own = sorted((run / "train" / "logs").glob("version_*/metrics.csv"))
    tracked = sorted((logs / "depthcontrast-synthetic" / "train").glob("version_*/metrics.csv"))
    assert [p.parent.name for p in tracked] == [p.parent.name for p in own] == ["version_0", "version_1"]
    events = csv_events(tracked)
    assert events == csv_events(own)
    assert sorted({step for k, step, _ in events if k == "train/loss_epoch"}) == [0, 1, 2]  # 1 step an epoch
    assert not (run / "train" / "logs" / "csv").exists()  # nothing else in the stage folder


@pytest.mark.slow
@tensorboard_only
def test_a_pretraining_stage_resumes_into_its_tensorboard_run(rooms, tmp_path):
    run = tmp_path / "depthcontrast-synthetic"
    interrupted_and_resumed(rooms, run, make_tracker("tensorboard"))
    folder = run / "train" / "logs" / "tensorboard"
    assert len(list(folder.glob("events.out.tfevents.*"))) == 2  # one per start, in one run folder
    assert sorted(p.name for p in (run / "train" / "logs").iterdir()) == ["tensorboard", "version_0", "version_1"]
    events = tensorboard_events(folder)
    assert events == csv_events(sorted((run / "train" / "logs").glob("version_*/metrics.csv")))
    assert sorted({step for k, step, _ in events if k == "train/loss_epoch"}) == [0, 1, 2]


@pytest.mark.slow
def test_a_pretraining_stage_resumes_into_its_mlflow_run(rooms, tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="mlflow is not installed (the trackers extra)")
    from mlflow.tracking import MlflowClient

    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(var, raising=False)
    run = tmp_path / "depthcontrast-synthetic"
    interrupted_and_resumed(rooms, run, make_tracker("mlflow"))
    store = run / "train" / "logs" / "mlflow"
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    (found,) = client.search_runs([client.get_experiment_by_name("freepoint-bench").experiment_id])
    assert found.info.run_name == "depthcontrast-synthetic/train"  # both starts logged into one run
    history = {(h.step, round(h.value, 5)) for h in client.get_metric_history(found.info.run_id, "train/loss_epoch")}
    own = csv_events(sorted((run / "train" / "logs").glob("version_*/metrics.csv")))
    assert history == {(step, value) for k, step, value in own if k == "train/loss_epoch"}
    assert {step for step, _ in history} == {0, 1, 2}


@pytest.mark.slow
def test_a_pretraining_stage_logs_to_wandb_offline(rooms, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed (the trackers extra)")
    for var in ("WANDB_MODE", "WANDB_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "")  # no account: offline needs none
    run = tmp_path / "depthcontrast-synthetic"
    interrupted_and_resumed(rooms, run, make_tracker("wandb"))
    starts = sorted((run / "train" / "logs" / "wandb").glob("offline-run-*-depthcontrast-synthetic-train"))
    assert len(starts) == 2  # one offline run folder per start, both of the stage's run id: `wandb sync` joins them
    assert all((p / "run-depthcontrast-synthetic-train.wandb").stat().st_size > 0 for p in starts)


@pytest.fixture(scope="module")
def s3dis_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("s3dis")
    write_synthetic_s3dis(root, 12, seed=1, config=SyntheticConfig(num_points=1500))
    return root


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["csv", pytest.param("tensorboard", marks=tensorboard_only)])
def test_a_finetune_cell_logs_its_fold_to_the_tracker(kind, bench_cli, s3dis_root, tmp_path):
    protocols = tmp_path / "protocols"
    (protocols / "splits").mkdir(parents=True)
    shutil.copy(PROTOCOLS_DIR / f"{PROTOCOL}.toml", protocols)
    results, logs = tmp_path / "results", tmp_path / "tracked"
    where = ["--logger-dir", logs] if kind == "csv" else []  # tensorboard: the fold's own folder
    code, _, err = bench_cli("finetune", "--protocol", PROTOCOL, "--method", "scratch", "--root", s3dis_root,
                             "--protocols-dir", protocols, "--results", results, "--cache", tmp_path / "cache",
                             "--checkpoints", tmp_path / "ckpt", "--runs", tmp_path / "runs", "--set", "epochs=2",
                             "--set", "num_queries=12", "--set", "batch_size=5", "--set", "max_points=null",
                             "--logger", kind, *where)
    assert code == 0, err
    fold = results / PROTOCOL / "scratch" / "seed-0" / "work" / "fold-0"
    own = csv_events(sorted((fold / "logs").glob("version_*/metrics.csv")))
    if kind == "csv":
        tracked = sorted((logs / PROTOCOL / "scratch" / "seed-0" / "fold-0").glob("version_*/metrics.csv"))
        assert [p.parent.name for p in tracked] == ["version_0"]
        events = csv_events(tracked)
    else:
        events = tensorboard_events(fold / "logs" / "tensorboard")
    assert events == own
    assert sorted({value for k, _, value in events if k == "epoch"}) == [0, 1]  # both epochs logged


def test_make_logger_names_runs_by_name_and_version(tmp_path):
    logger = make_logger("csv", tmp_path, "s3dis-10pct-masks/freepoint/seed-0", "fold-0")
    assert Path(logger.log_dir) == tmp_path / "s3dis-10pct-masks" / "freepoint" / "seed-0" / "fold-0" / "version_0"
    flat = make_logger("csv", tmp_path, "x", "y", nest=False)
    assert Path(flat.log_dir) == tmp_path / "version_0"
