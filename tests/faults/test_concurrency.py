"""Several processes on one results store and one checkpoints index; a full disk or a read-only output folder.

Two `bench.py run` processes at once compute every cell and every pretraining run exactly once (one Lightning
log version per training), the index stays valid JSON with every entry; a write that fails (ENOSPC, EROFS, torch's
"file write failed") is one line naming the file, the earlier results stay byte for byte, no temporary file is
left, and the next run completes the work.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from .conftest import FT, PT_RUN, bench_cmd, bench_env, record_figures, where

RUN = ["--set", "epochs=1", *FT, "--pretrain-set", "epochs1=1", "--pretrain-set", "epochs2=1", *PT_RUN]


def leftovers(folder: Path) -> list[str]:
    """Returns the temporary files of atomic writes (``.<name>.*.tmp``) left under folder."""
    return sorted(str(p) for p in folder.rglob(".*.tmp"))


def test_two_runs_on_one_store(workspace):
    ws = workspace
    args = ["run", "--methods", "freepoint,scratch", "--protocols", "synthetic-s3dis-50pct-scenes", "--seeds", "0",
            "1", *where(ws), *RUN]
    procs = []
    for i in range(2):
        err = open(ws["tmp"] / f"err{i}.txt", "w")  # noqa: SIM115 - closed below
        procs.append((subprocess.Popen(bench_cmd(*args), cwd=ws["tmp"], env={**bench_env(), "COLUMNS": "250"},
                                       stdout=subprocess.PIPE, stderr=err, text=True), err))
    outputs = []
    for proc, err in procs:
        out, _ = proc.communicate(timeout=900)
        err.close()
        assert proc.returncode == 0, (ws["tmp"] / "err0.txt").read_text()[-2000:]
        outputs.append(out)
    from freepoint_bench.engine.checkpoints import read_index
    from freepoint_bench.results import read_result

    cells = sorted(ws["results"].glob("*/*/seed-*"))
    assert len(cells) == 4
    for cell in cells:
        read_result(cell / "result.json")
        # one Lightning log version: the cell was trained by one process, once
        assert len(list((cell / "work" / "fold-0" / "logs").iterdir())) == 1, cell
    for step in ("step1", "step2"):
        (run_dir,) = (ws["runs"] / "pretrain").glob("freepoint-*")  # one FreePoint pretraining for both seeds
        assert len(list((run_dir / step / "logs").iterdir())) == 1
    index = read_index(ws["checkpoints"] / "index.json")  # valid JSON, checksum intact
    assert sorted(e["method"] for e in index["checkpoints"].values()) == ["freepoint", "scratch", "scratch"]
    for entry in index["checkpoints"].values():
        assert all((ws["checkpoints"] / f).is_file() for f in entry["files"].values())
    assert not leftovers(ws["tmp"])
    done = sum(out.count(" done ") for out in outputs)
    record_figures("concurrency:two runs", {"cells": 4, "computed_by_each": [o.count(" done ") for o in outputs],
                                            "busy_or_skipped": [o.count(" busy ") + o.count(" skipped ")
                                                                for o in outputs]})
    assert done == 4  # each cell reported computed by exactly one of the two processes


def _register_many(index: str, worker: int, count: int) -> None:
    from freepoint_bench.engine.checkpoints import register_checkpoint

    for i in range(count):
        register_checkpoint(Path(index), f"w{worker}-{i}", {"method": "scratch", "data": {"scenes": ["a"]}},
                            {"backbone": Path(index).parent / f"w{worker}-{i}.ckpt"})


def test_concurrent_index_registrations(tmp_path):
    from freepoint_bench.engine.checkpoints import read_index

    index = tmp_path / "index.json"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_register_many, args=(str(index), w, 10)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    entries = read_index(index)["checkpoints"]
    assert sorted(entries) == sorted(f"w{w}-{i}" for w in range(4) for i in range(10))
    assert not leftovers(tmp_path)


# ---------------------------------------------------------------------------------------------- full disk


def finetune(ws, seed: int) -> list[str]:
    return ["finetune", "--protocol", "synthetic-s3dis-50pct-scenes", "--method", "scratch", "--seeds", str(seed),
            *where(ws), "--set", "epochs=1", *FT]


def cli(capsys, args) -> tuple[int, str]:
    from freepoint_bench.cli import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    return int(exc.value.code or 0), capsys.readouterr().err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def full_disk(monkeypatch, target: str, how: str) -> None:
    """Makes writes of files whose name contains `target` fail as on a full disk (ENOSPC), a read-only folder
    (EROFS) or torch's zip writer ("file write failed"), at the layer that writes them."""
    import lightning_fabric.plugins.io.torch_io as torch_io
    import torch

    import freepoint_bench.atomic as atomic

    mkstemp, replace, save, lightning_save = tempfile.mkstemp, os.replace, torch.save, torch_io._atomic_save

    def fail(name: str) -> None:
        if target in str(name):
            code = errno.ENOSPC if how == "enospc" else errno.EROFS
            raise OSError(code, os.strerror(code), str(name))

    if how == "enospc":
        monkeypatch.setattr(atomic.tempfile, "mkstemp",
                            lambda *a, **k: (fail(k.get("prefix", "")), mkstemp(*a, **k))[1])
    elif how == "erofs":
        monkeypatch.setattr(atomic.os, "replace", lambda a, b: (fail(b), replace(a, b))[1])
    elif how == "torch":
        def torch_save(obj, f, *a, **k):
            if target in str(f) or (target == ".ckpt" and str(f).endswith(".tmp") and ".ckpt." in str(f)):
                raise RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing "
                                   "file data/0: file write failed")
            return save(obj, f, *a, **k)
        monkeypatch.setattr(torch, "save", torch_save)
    else:  # Lightning's epoch checkpoints (written through fsspec, not atomic.py)
        monkeypatch.setattr(torch_io, "_atomic_save", lambda ckpt, path: (fail(path), lightning_save(ckpt, path))[1])


# in the order the cell writes them: each failure stops the run at the next write the previous runs left to do
FAILURES = [(".ckpt", "torch"), ("index.json", "enospc"), ("cell.json", "erofs"), ("epoch=", "lightning"),
            ("fold.json", "erofs"), ("result.json", "enospc")]


def test_full_disk_or_read_only_output(workspace, capsys, monkeypatch):
    ws = workspace
    code, err = cli(capsys, finetune(ws, 0))
    assert code == 0, err
    before = snapshot(ws["results"])
    outcomes = {}
    for target, how in FAILURES:
        with monkeypatch.context() as m:
            full_disk(m, target, how)
            code, err = cli(capsys, finetune(ws, 1))
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        assert code == 2 and "Traceback" not in err, (target, how, err[-2000:])
        assert lines[-1].startswith("error:") and "cannot write" in err and "free disk space" in err, (target, err)
        assert target.strip("=") in err or how == "lightning", err
        after = snapshot(ws["results"])
        assert {k: after[k] for k in before} == before  # every earlier file, byte for byte
        assert not (ws["results"] / "synthetic-s3dis-50pct-scenes" / "scratch" / "seed-1" / "result.json").exists()
        assert not leftovers(ws["tmp"])
        outcomes[f"{target} ({how})"] = "one-line error, earlier results intact"
    code, err = cli(capsys, finetune(ws, 1))  # space again: the run completes
    assert code == 0, err
    from freepoint_bench.results import read_result

    assert read_result(ws["results"] / "synthetic-s3dis-50pct-scenes" / "scratch" / "seed-1" / "result.json")
    json.loads((ws["checkpoints"] / "index.json").read_text())
    record_figures("full disk / read-only", {"cases": len(FAILURES), "outcomes": outcomes})


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; the EROFS case above covers it")
def test_read_only_results_folder(workspace, capsys):
    ws = workspace
    code, err = cli(capsys, finetune(ws, 0))
    assert code == 0, err
    before = snapshot(ws["results"])
    folders = [p for p in [ws["results"], *ws["results"].rglob("*")] if p.is_dir()]
    for p in folders:
        p.chmod(0o555)
    try:
        code, err = cli(capsys, finetune(ws, 1))
    finally:
        for p in folders:
            p.chmod(0o755)
    assert code == 2 and "Traceback" not in err and "cannot write" in err, err
    assert {k: v for k, v in snapshot(ws["results"]).items() if k in before} == before
