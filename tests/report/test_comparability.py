"""The report compares only like cells (issue 29 item 10): one fine-tuning recipe within an entry and against scratch,
pretraining datasets named when methods differ, the paper's rows only beside cells of the paper's setting."""

from __future__ import annotations

import hashlib
import io
import json

import pandas as pd
import pytest
from report_fixtures import AREA_5, PAPER_CONFIG, checkpoint_record, write_ladder_store, write_store
from rich.console import Console

from freepoint_bench.harness.finetune import finetune_config
from freepoint_bench.report import build_leaderboard, build_report, load_results, to_terminal, write_report
from freepoint_bench.report.paper import FINETUNE
from freepoint_bench.report.render import entry_text, to_html, to_latex, to_markdown
from freepoint_bench.results import RECIPE_EXCLUDED

P10 = "s3dis-10pct-masks"
EPOCHS = PAPER_CONFIG["epochs"]  # the paper preset's
# the config fields that do not make a recipe, as results.RECIPE_EXCLUDED must list them (each with why)
EXCLUDED = {"train.seed", "train.name", "train.num_workers", "train.accelerator", "train.epochs1", "train.epochs2"}


def edit(root, protocol: str, method: str, change, seeds=(0, 1, 2)) -> None:
    """Rewrites the result.json of `method`'s seeds in `protocol` with change(doc, seed) applied."""
    for seed in seeds:
        path = root / protocol / method / f"seed-{seed}" / "result.json"
        if path.is_file():
            doc = json.loads(path.read_text())
            change(doc, seed)
            path.write_text(json.dumps(doc))


def set_config(key: str, value):
    """Returns a change setting config field `key` (dotted) to value."""

    def change(doc, _seed):
        *parents, leaf = key.split(".")
        block = doc["config"] = json.loads(json.dumps(doc["config"]))
        for name in parents:
            block = block[name]
        block[leaf] = value

    return change


def digest(config: dict) -> str:
    """The recipe hash worked independently: sha256 of the sorted JSON of the flattened config less EXCLUDED."""
    flat = {}

    def walk(block, prefix):
        for k, v in block.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                flat[f"{prefix}{k}"] = v

    walk(config, "")
    kept = {k: v for k, v in flat.items() if k not in EXCLUDED}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode() + b"\x00").hexdigest()[:16]


def board_of(root):
    return build_leaderboard(load_results(root))


def test_the_excluded_fields_are_listed_with_a_reason_and_do_not_split_entries(tmp_path):
    assert set(RECIPE_EXCLUDED) == EXCLUDED and all(RECIPE_EXCLUDED.values())
    root = write_store(tmp_path / "results")
    before = board_of(root)
    values = {"train.seed": 7, "train.name": "custom", "train.num_workers": 0, "train.accelerator": "cpu",
              "train.epochs1": 3, "train.epochs2": 1}
    for method in ("scratch", "freepoint", "pointcontrast", "csc"):
        for key, value in values.items():  # a different excluded field per seed, and on some methods only
            edit(root, P10, method, lambda doc, seed, k=key, v=value: seed == 1 and set_config(k, v)(doc, seed))
    after = board_of(root)
    for key, entry in before.entries.items():
        assert after.entries[key].status == entry.status and after.entries[key].metrics == entry.metrics, key
        assert not after.entries[key].not_comparable
    assert after.notes == before.notes
    record = load_results(root).runs[0]
    assert record.recipe_hash == digest(record.config)


def test_a_recipe_change_within_an_entry_is_a_conflict_that_names_the_field(tmp_path):
    root = write_store(tmp_path / "results")
    edit(root, P10, "pointcontrast", set_config("epochs", EPOCHS + 1), seeds=(1,))
    entry = board_of(root).entry(P10, "pointcontrast")
    assert entry.status == "conflict" and not entry.metrics
    other = json.loads(json.dumps(PAPER_CONFIG))
    other["epochs"] = EPOCHS + 1
    assert entry.reason == (
        f"not averaged: recipe_hash differs (seeds 0, 2 → {digest(PAPER_CONFIG)[:12]}; seed 1 → "
        f"{digest(other)[:12]}: epochs {EPOCHS} vs {EPOCHS + 1})"
    )


def test_a_pretraining_dataset_change_within_an_entry_is_a_conflict(tmp_path):
    root = write_store(tmp_path / "results")
    edit(root, P10, "freepoint", lambda doc, _: doc.update(checkpoint=checkpoint_record("freepoint", "s3dis")),
         seeds=(2,))
    entry = board_of(root).entry(P10, "freepoint")
    assert entry.status == "conflict"
    assert entry.reason == "not averaged: pretrain_dataset differs (seeds 0, 1 → scannet; seed 2 → s3dis)"


def test_a_method_with_another_recipe_than_scratch_gets_no_delta_and_the_field_named(tmp_path):
    root = write_store(tmp_path / "results")
    edit(root, P10, "freepoint", set_config("epochs", 20))
    edit(root, P10, "freepoint", set_config("train.lr", 0.003))
    board = board_of(root)
    fp = board.entry(P10, "freepoint")
    assert fp.status == "ok" and fp.metrics["ap"].n == 3
    assert all(s.paired is None for s in fp.metrics.values()) and fp.delta_note == ""
    assert fp.not_comparable == f"epochs 20 vs scratch's {EPOCHS}, lr 0.003 vs scratch's {PAPER_CONFIG['train']['lr']}"
    assert f"{P10}/freepoint: not comparable (another fine-tuning recipe): {fp.not_comparable}" in board.notes
    # never bold: freepoint had the best mean of every column; now pointcontrast has AP and AP50
    assert all("freepoint" not in board.best[(P10, m)] for m in ("ap", "ap50", "ap25"))
    assert board.best[(P10, "ap")] == {"pointcontrast"}
    assert entry_text(fp, "ap") == ("38.0 ± 1.7", "n=3 · not comparable")
    # the others keep their Δ; the paper's rows stay, without freepoint's (not the paper preset's recipe)
    assert board.entry(P10, "pointcontrast").metrics["ap"].paired.delta == pytest.approx(0.03)
    assert [r.method for r in board.references[P10]] == [r.method for r in FINETUNE[P10] if r.method != "freepoint"]
    assert any(n.startswith(f"{P10}: the paper's Table 2 rows quoted without freepoint's (its recipe is not the "
                            f"paper preset's: epochs 20 vs the paper preset's {EPOCHS}") for n in board.notes)


def test_scratch_with_another_preset_leads_with_the_preset_names(tmp_path):
    root = write_store(tmp_path / "results")
    small = finetune_config("cpu-small").model_dump(mode="json")
    edit(root, "s3dis-20pct-masks", "scratch", lambda doc, _: doc.update(config=small, preset="cpu-small"))
    fp = board_of(root).entry(P10, "freepoint")
    assert not fp.not_comparable  # the other protocol's scratch is not this one's
    edit(root, P10, "scratch", lambda doc, _: doc.update(config=small, preset="cpu-small"))
    pc = board_of(root).entry(P10, "pointcontrast")
    # the preset names lead, then the first NAMED_FIELDS (3) fields, then how many more differ
    assert pc.not_comparable.startswith("preset paper vs scratch's cpu-small; ")
    assert pc.not_comparable.count(" vs scratch's ") == 4 and pc.not_comparable.endswith(" more)")


def test_not_comparable_in_every_format(tmp_path):
    root = write_store(tmp_path / "results")
    edit(root, P10, "freepoint", set_config("epochs", 20))
    report = build_report(board_of(root), source="results")
    console = Console(record=True, width=300, file=io.StringIO())
    console.print(to_terminal(report))
    terminal = console.export_text()
    assert "38.0 ± 1.7" in terminal and "n=3 · not comparable" in terminal
    assert f"{P10}/freepoint: not comparable (another fine-tuning recipe): epochs 20 vs scratch's {EPOCHS}" in terminal
    md = to_markdown(report)
    assert "| freepoint | 38.0 ± 1.7 (n=3 · not comparable) | 52.0 ± 2.0 (n=3 · not comparable) |" in md
    assert f"- {P10}/freepoint: not comparable (another fine-tuning recipe): epochs 20 vs scratch's {EPOCHS}" in md
    html = to_html(report)
    assert '<span class="v">38.0 ± 1.7</span><span class="d">n=3 · not comparable</span>' in html
    tex = to_latex(report)
    assert r"freepoint & 38.0 $\pm$ 1.7 {\scriptsize (3)} {\scriptsize not comparable} & " in tex
    assert f"{P10}/freepoint: not comparable (another fine-tuning recipe): epochs 20 vs scratch's {EPOCHS}" in tex
    write_report(report, ["csv"], tmp_path / "out")
    df = pd.read_csv(tmp_path / "out" / "leaderboard.csv", keep_default_na=False, na_values=[""])
    fp = df[(df.protocol == P10) & (df.method == "freepoint")]
    assert not fp.comparable.any() and fp.delta_pct.isna().all()
    assert (fp.note == f"not comparable: epochs 20 vs scratch's {EPOCHS}").all()
    others = df[(df.protocol == P10) & (df.method != "freepoint")]
    assert others.comparable.all() and set(others.recipe_hash) == {digest(PAPER_CONFIG)}
    assert list(df[df.protocol == P10].drop_duplicates("method").reimplemented) == [False, True, False, True]


def test_not_comparable_on_the_ladder(tmp_path):
    root = write_ladder_store(tmp_path / "results")
    edit(root, "s3dis-linear", "pointcontrast", set_config("train.lr", 0.5))
    report = build_report(board_of(root), source="results")
    md = to_markdown(report)
    ladder = next(line for line in md.splitlines() if line.startswith("| pointcontrast (re-implemented here) |"))
    assert ladder.split(" | ")[1] == "25.0 ± 3.0 (n=3 · not comparable)"
    write_report(report, ["csv"], tmp_path / "out")
    lad = pd.read_csv(tmp_path / "out" / "ladder.csv", keep_default_na=False, na_values=[""])
    pc = lad[lad.method == "pointcontrast"]
    assert list(pc.comparable) == [False, True, True, True, True] and pd.isna(pc.delta_pct.iloc[0])


def test_methods_pretrained_on_different_datasets_are_named_in_the_notes(tmp_path):
    root = write_store(tmp_path / "results")
    edit(root, P10, "pointcontrast",
         lambda doc, _: doc.update(checkpoint=checkpoint_record("pointcontrast", "train-scenes")))
    board = board_of(root)
    assert (f"{P10}: pretrained on scannet (csc, freepoint) vs train-scenes (pointcontrast); compare these methods "
            "with each other only knowing so") in board.notes
    assert not any(n.startswith("s3dis-20pct-masks: pretrained") for n in board.notes)  # scratch has no pretraining
    # Δ against scratch stands; the paper's PointContrast row is not quoted beside a cell pretrained elsewhere
    assert board.entry(P10, "pointcontrast").metrics["ap"].paired.delta == pytest.approx(0.03)
    assert "pointcontrast" not in {r.method for r in board.references[P10]}
    assert (f"{P10}: the paper's Table 2 rows quoted without pointcontrast's (pretrained on train-scenes, not "
            "scannet)") in board.notes
    assert "pretrained on scannet (csc, freepoint) vs train-scenes (pointcontrast)" in to_markdown(
        build_report(board))


def test_paper_rows_are_quoted_only_beside_a_paper_recipe_store(tmp_path):
    paper = board_of(write_store(tmp_path / "paper"))
    assert paper.references[P10] == FINETUNE[P10] and not any("not quoted" in n for n in paper.notes)
    # the cpu-small recipe: the same numbers, no paper rows, a note that says why
    root = write_store(tmp_path / "small")
    small = finetune_config("cpu-small").model_dump(mode="json")
    for method in ("scratch", "freepoint", "pointcontrast", "csc"):
        for protocol in (P10, "s3dis-20pct-masks"):
            edit(root, protocol, method, lambda doc, _: doc.update(config=small, preset="cpu-small"))
    board = board_of(root)
    assert board.references == {P10: [], "s3dis-20pct-masks": []}
    note = next(n for n in board.notes if n.startswith(f"{P10}: the paper's Table 2 rows are not quoted"))
    assert note.startswith(f"{P10}: the paper's Table 2 rows are not quoted (no cell here is of the paper's setting; "
                           "scratch: its recipe is not the paper preset's: preset cpu-small vs the paper preset's "
                           "paper; ")
    text = to_markdown(build_report(board))
    assert "paper: FreePoint" not in text and "Quoted paper rows" not in text and note in text
    # the paper's recipe on part of Area 5 only: not quoted either
    root = write_store(tmp_path / "part")
    for method in ("scratch", "freepoint", "pointcontrast", "csc"):
        edit(root, P10, method, lambda doc, _: doc.update(eval_scenes=AREA_5[:10]))
    board = board_of(root)
    assert board.references[P10] == [] and board.references["s3dis-20pct-masks"] == FINETUNE["s3dis-20pct-masks"]
    assert f"{P10}: the paper's Table 2 rows are not quoted (10 evaluation scenes, not Area 5's 68)" in board.notes


def test_scratch_is_never_flagged_for_its_checkpoints_dataset(tmp_path):
    """The harness's scratch is a published random initialisation; files before issue 29 name a dataset in its id."""
    root = write_store(tmp_path / "results")
    older = {"path": "c/scratch.ckpt", "sha256": "c" * 64, "weights_sha256": "d" * 64,
             "id": "scratch-s3dis-0123456789", "method": "scratch"}
    edit(root, P10, "scratch", lambda doc, seed: doc.update(checkpoint={**older, "sha256": str(seed) * 64}))
    edit(root, P10, "scratch", lambda doc, _: doc.update(checkpoint={**older, "id": "scratch-scannet-0123456789"}),
         seeds=(2,))
    board = board_of(root)
    scratch = board.entry(P10, "scratch")
    assert scratch.status == "ok" and scratch.pretrain_dataset == ""
    assert not any("pretrained on" in n for n in board.notes)
    assert board.references[P10] == FINETUNE[P10]
