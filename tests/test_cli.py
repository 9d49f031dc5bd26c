"""The bench.py commands end to end on a tiny synthetic dataset, and their one-line errors."""

from __future__ import annotations

import json

import pytest

from freepoint_bench.data.synthetic import SyntheticConfig, write_synthetic_dataset


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(root, num_scenes=2, seed=3, config=SyntheticConfig(num_points=6000))
    return root


def common(synth, tmp_path):
    return ["--dataset", "synthetic", "--root", synth, "--cache", tmp_path / "cache"]


def test_help_lists_the_commands(bench_cli):
    code, out, _ = bench_cli("--help")
    assert code == 0
    for command in ("data", "evaluate", "pseudo-labels", "tune", "pretrain", "predict"):
        assert command in out


def test_data_prepare_list_show(bench_cli, synth, tmp_path):
    args = common(synth, tmp_path)
    code, out, _ = bench_cli("data", "prepare", *args)
    assert code == 0 and "2 scenes ready" in out
    code, out, _ = bench_cli("data", "list", *args)
    assert code == 0 and "synth_0000" in out and "synth_0001" in out
    png, ply = tmp_path / "s.png", tmp_path / "s.ply"
    code, _, _ = bench_cli("data", "show", *args, "--scene", "synth_0001", "--out", png, "--ply", ply)
    assert code == 0 and png.stat().st_size > 1000 and ply.stat().st_size > 6000 * 15


def test_pseudo_labels_export_compare_and_evaluate(bench_cli, synth, tmp_path):
    args = common(synth, tmp_path)
    labels, export = tmp_path / "labels", tmp_path / "export"
    code, out, _ = bench_cli(
        "pseudo-labels", *args, "--out", labels, "--export-benchmark", export, "--compare", "kmeans,birch"
    )
    assert code == 0
    assert "scenes computed / cached" in out and "2 / 0" in out
    assert "FreePoint σ=0.9" in out and "kmeans" in out and "birch" in out
    assert (export / "sigma-0.9" / "synth_0000.txt").is_file() and (export / "sigma-1.2" / "synth_0001.txt").is_file()
    code, out, _ = bench_cli("pseudo-labels", *args, "--out", labels, "--sigma", "0.9")
    assert code == 0 and "0 / 2" in out  # every scene cached: the rerun skips them
    result = tmp_path / "eval.json"
    code, out, _ = bench_cli(
        "evaluate", *args, "--predictions", export / "sigma-0.9", "--class-agnostic", "--json", result
    )
    assert code == 0 and "object" in out
    scores = json.loads(result.read_text())
    assert 0.0 <= scores["ap"] <= scores["ap25"] <= 1.0 and scores["class_agnostic"] is True
    code, out, _ = bench_cli(
        "data", "show", *args, "--scene", "synth_0000", "--labels", labels, "--out", tmp_path / "strip.png"
    )
    assert code == 0 and (tmp_path / "strip.png").is_file()


def test_tune_writes_a_config_that_pseudo_labels_accepts_and_resumes(bench_cli, synth, tmp_path):
    args = common(synth, tmp_path)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    out_dir = tmp_path / "tune"
    code, out, _ = bench_cli("tune", *args, "--trials", "2", "--storage", storage, "--out", out_dir)
    assert code == 0 and "2 trials" in out
    code, out, _ = bench_cli("tune", *args, "--trials", "1", "--storage", storage, "--out", out_dir)
    assert code == 0 and "3 trials" in out
    code, _, _ = bench_cli("pseudo-labels", *args, "--config", out_dir / "best.toml", "--out", tmp_path / "l2")
    assert code == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["data", "prepare", "--dataset", "nope", "--root", "."], "nope"),
        (["data", "prepare", "--dataset", "scannet-npy"], "--root is required"),
        (["data", "prepare", "--dataset", "s3dis", "--root", "/does/not/exist"], "does not exist"),
        (["evaluate", "--dataset", "synthetic", "--predictions", "/does/not/exist"], "predictions folder not found"),
        (["pseudo-labels", "--dataset", "synthetic", "--shard", "3/2"], "--shard"),
        (["pseudo-labels", "--dataset", "synthetic", "--set", "k1=zero"], "k1"),
        (["pretrain", "--method", "nope", "--dataset", "synthetic"], "nope"),
        (["pretrain", "--method", "freepoint", "--dataset", "synthetic", "--devices", "two"], "devices must be"),
        (["pretrain", "--method", "freepoint", "--dataset", "synthetic", "--devices", "0"], "devices must be"),
    ],
)
def test_user_errors_are_one_line_with_exit_2(bench_cli, tmp_path, argv, message):
    code, _, err = bench_cli(*argv, "--cache", tmp_path / "cache")
    assert code == 2
    assert message in err and "Traceback" not in err


@pytest.mark.slow
def test_pretrain_predict_evaluate(bench_cli, synth, tmp_path):
    args = common(synth, tmp_path)
    ckpts = tmp_path / "ckpt"
    code, out, err = bench_cli(
        "pretrain",
        "--method",
        "freepoint",
        *args,
        "--scene",
        "synth_0000",
        "--scene",
        "synth_0001",
        "--epochs1",
        "1",
        "--epochs2",
        "1",
        "--out",
        tmp_path / "run",
        "--checkpoints",
        ckpts,
    )
    assert code == 0, err
    assert "GPU available" not in err and "Tip" not in err  # Lightning's INFO banners stay quiet
    segmenter = next(ckpts.glob("*-segmenter.ckpt"))
    assert next(ckpts.glob("*-backbone.ckpt")).is_file() and (ckpts / "index.json").is_file()
    code, out, err = bench_cli(
        "pretrain",
        "--method",
        "freepoint",
        *args,
        "--scene",
        "synth_0000",
        "--scene",
        "synth_0001",
        "--epochs1",
        "2",
        "--epochs2",
        "1",
        "--out",
        tmp_path / "run",
        "--checkpoints",
        ckpts,
        "--resume",
    )
    assert code == 2 and "epochs1" in err  # resuming with another config is refused, naming the field
    pred = tmp_path / "pred"
    code, out, err = bench_cli("predict", "--checkpoint", segmenter, *args, "--export-benchmark", pred)
    assert code == 0, err
    code, out, err = bench_cli("evaluate", *args, "--predictions", pred, "--class-agnostic")
    assert code == 0 and "object" in out
    code, out, err = bench_cli(
        "predict", "--checkpoint", segmenter, *args, "--export-benchmark", tmp_path / "pred-sp", "--superpoints"
    )
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "pred-sp").glob("*.txt")) == sorted(p.name for p in pred.glob("*.txt"))
    code, out, err = bench_cli("predict", "--checkpoint", segmenter, *args, "--export-benchmark",
                               tmp_path / "pred-q", "--set", "topk=none", "--set", "mask_threshold=0.4")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "pred-q").glob("*.txt")) == sorted(p.name for p in pred.glob("*.txt"))
    for bad, says in ((["--set", "dbscan_eps=0.6"], "apply to mode 'mask3d' only"),
                      (["--set", "mode=mask3d"], "class-agnostic segmenter (no class head"),
                      (["--set", "mode=mask4d"], "invalid inference config"),
                      (["--set", "eps=1"], "unknown inference config (--set) field 'eps'")):
        code, _, err = bench_cli("predict", "--checkpoint", segmenter, *args, "--export-benchmark",
                                 tmp_path / "pred-bad", *bad)
        assert code == 2 and says in err and "Traceback" not in err, err
    assert not (tmp_path / "pred-bad").exists()


def test_threads_limits_the_thread_pools_before_any_command(bench_cli, monkeypatch):
    from freepoint_bench import parallel

    limited = []
    monkeypatch.setattr(parallel, "limit_threads", limited.append)
    code, out, _ = bench_cli("--threads", "1", "protocols", "list")
    assert code == 0 and "s3dis-10pct-masks" in out and limited == [1]
    code, _, err = bench_cli("--threads", "0", "protocols", "list")
    assert code == 2 and "--threads" in err and limited == [1]
    code, _, _ = bench_cli("protocols", "list")
    assert code == 0 and limited == [1]  # not given: the libraries' defaults are left alone
