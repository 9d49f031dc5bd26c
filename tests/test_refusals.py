"""Bad input that used to slip through (or end in a library's traceback) is refused in one line naming the fix."""

from __future__ import annotations

import pytest
import torch

from freepoint_bench.atomic import ensure_dir, open_lock
from freepoint_bench.errors import CheckpointError, ConfigError, DataError


def test_pseudo_label_config_toml_must_hold_a_table(tmp_path):
    from freepoint_bench.freepoint.config import PseudoLabelConfig

    bad = tmp_path / "bad.toml"
    bad.write_text('pseudo_labels = "k1=4"\n')
    with pytest.raises(ConfigError, match=r"not a table; write \[pseudo_labels\]"):
        PseudoLabelConfig.from_toml(bad)
    with pytest.raises(ConfigError, match="cannot read the pseudo-label config"):
        PseudoLabelConfig.from_toml(tmp_path)  # a folder


def test_tune_config_refuses_an_empty_space_and_a_step_wider_than_its_range(tmp_path):
    from freepoint_bench.tuning import TuneConfig

    with pytest.raises(ConfigError, match="nothing to tune"):
        TuneConfig(alphas=[])
    with pytest.raises(ConfigError, match="wider than plane_distance_range"):
        TuneConfig(tune_plane_distance=True, plane_distance_range=(0.01, 0.02), plane_distance_step=0.05)
    with pytest.raises(ConfigError):
        TuneConfig(plane_distance_range=(0.01, float("inf")))
    bad = tmp_path / "tune.toml"
    bad.write_text("tuning = 3\n")
    with pytest.raises(ConfigError, match="not a table"):
        TuneConfig.from_toml(bad)


def test_protocol_split_paths_stay_inside_the_protocols_folder():
    from freepoint_bench.harness.protocol import ProtocolSpec

    base = {"name": "p", "dataset": "s3dis", "train_groups": ["Area_1"], "eval_groups": ["Area_5"],
            "unit": "scenes", "fraction": 0.1}
    for path in ("/etc/passwd", "../outside.json", " "):
        with pytest.raises(Exception, match="inside the protocols folder"):
            ProtocolSpec(**base, split_file=path)
    assert ProtocolSpec(**base, split_file="splits/p.json").split_file == "splits/p.json"


def test_a_missing_protocols_folder_is_named(tmp_path):
    from freepoint_bench.harness.protocol import available_protocols

    with pytest.raises(ConfigError, match="protocols folder not found"):
        available_protocols(tmp_path / "nowhere")


def test_folders_and_locks_that_cannot_be_made_are_one_line_errors(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataError, match="file"):
        ensure_dir(blocker / "sub")
    with pytest.raises(DataError):
        open_lock(blocker / "sub" / ".lock")
    with open_lock(tmp_path / "a" / "b" / ".lock") as fh:
        assert not fh.closed


def test_a_checkpoint_of_pickled_objects_gets_one_line(tmp_path):
    from freepoint_bench.models.checkpoint import load_checkpoint

    path = tmp_path / "objects.ckpt"
    torch.save({"state_dict": {}, "metadata": {}, "obj": ValueError("x")}, path)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    message = str(exc.value)
    assert "\n" not in message and "not a tensors-only torch file" in message
    assert "weights_only=False" not in message  # torch's advice is what a loader must never follow


@pytest.mark.parametrize(("args", "match"), [
    (["run", "--methods", "scratch", "--protocols", "synthetic-s3dis-20pct-masks", "--seeds", "-1"],
     "seeds are integers >= 0"),
    (["run", "--methods", "scratch", "--protocols", "synthetic-s3dis-20pct-masks", "--checkpoint",
      "freepoint={ckpt}"], "freepoint is not in --methods"),
    (["pretrain", "--method", "scratch", "--dataset", "synthetic", "--resume", "--overwrite"],
     "--resume and --overwrite: give one"),
])
def test_cli_refuses_contradictory_flags(bench_cli, tmp_path, args, match):
    (tmp_path / "x.ckpt").write_bytes(b"")
    code, out, err = bench_cli(*[a.format(ckpt=tmp_path / "x.ckpt") for a in args])
    assert code != 0
    assert match in out + err
