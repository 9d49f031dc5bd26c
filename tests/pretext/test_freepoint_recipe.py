"""FreePoint's own gaps recorded (issue 29, item 9): the paper's deep-feature affinities are one override away
(`deep_features=<checkpoint id or .ckpt>`), and every checkpoint of a run records which affinities and solver made
its pseudo labels. Default configs keep their hashes, label cache keys and markers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from stores import MemoryStore
from test_pinned_ids import CONFIG_HASHES  # (this folder's pins)

from freepoint_bench.atomic import stable_hash
from freepoint_bench.data.synthetic import SyntheticConfig, generate_room
from freepoint_bench.engine.checkpoints import find_backbone, input_metadata, register_checkpoint, save_model_checkpoint
from freepoint_bench.engine.features import BackboneFeatures
from freepoint_bench.engine.module import segmenter_from_preset
from freepoint_bench.errors import ConfigError
from freepoint_bench.freepoint.config import PseudoLabelConfig
from freepoint_bench.freepoint.pipeline import cache_key, label_path
from freepoint_bench.models.checkpoint import load_checkpoint
from freepoint_bench.pretext.base import get_method
from freepoint_bench.pretext.freepoint import labels_marker, pseudo_label_recipe

# as tests/pretext/test_pinned_ids.py pins them: deep_features at its default leaves them where they were
DEFAULT_CONFIG_HASHES = {preset: CONFIG_HASHES["freepoint", preset] for preset in ("cpu-small", "paper")}
FAST = {"voxel_size_m": 0.15, "num_queries": 8, "batch_size": 2, "epochs1": 1, "epochs2": 1}
RECIPE_KEYS = ["affinities", "deep_features", "features", "normal_affinity", "paper_differences", "sigmas", "solver"]
FEATURES_ID = "csc-synthetic-0123456789"


@pytest.mark.parametrize("preset", sorted(DEFAULT_CONFIG_HASHES))
def test_deep_features_are_left_out_of_a_default_config_and_change_it_when_set(preset):
    method = get_method("freepoint")
    default = method.default_config(preset)
    assert "deep_features" not in default.model_dump(mode="json")
    assert stable_hash(default.model_dump(mode="json")) == DEFAULT_CONFIG_HASHES[preset]
    deep = method.default_config(preset, deep_features=FEATURES_ID)
    assert deep.model_dump(mode="json")["deep_features"] == FEATURES_ID
    assert stable_hash(deep.model_dump(mode="json")) != DEFAULT_CONFIG_HASHES[preset]
    with pytest.raises(ConfigError, match=r"deep_features needs pseudo.alpha_emb > 0"):
        method.default_config(preset, deep_features=FEATURES_ID, **{"pseudo.alpha_emb": 0.0})


def test_the_default_recipe_names_the_traditional_affinities_and_gaec():
    config = get_method("freepoint").default_config("cpu-small")
    recipe = pseudo_label_recipe(config, None)
    assert sorted(recipe) == RECIPE_KEYS
    p = config.pseudo
    assert recipe["affinities"] == {"emb": 0.0, "norm": p.alpha_norm, "xyz": p.alpha_xyz, "rgb": p.alpha_rgb}
    assert recipe["features"] == ["xyz", "rgb", "normals"] and recipe["deep_features"] is None
    assert (recipe["solver"], recipe["sigmas"]) == ("gaec", [0.9, 1.2])
    assert len(recipe["paper_differences"]) == 2  # no deep features; GAEC, not RAMA
    assert not any("RAMA" in d for d in pseudo_label_recipe(config.model_copy(
        update={"pseudo": p.with_overrides({"solver": "rama"})}), None)["paper_differences"])


def test_a_default_label_marker_keeps_its_name():
    names, pseudo = ["synth_0000", "synth_0001"], PseudoLabelConfig()
    before = Path("l") / f"ready-{stable_hash(sorted(names), pseudo.model_dump(mode='json'), length=12)}.json"
    assert labels_marker(Path("l"), names, pseudo) == before
    assert labels_marker(Path("l"), names, pseudo, "backbone-features:abc") != before


@pytest.fixture(scope="module")
def features_ckpt(tmp_path_factory):
    """A cpu-small backbone checkpoint of a 'csc' run, registered under FEATURES_ID in ckpt/index.json."""
    base = tmp_path_factory.mktemp("features")
    torch.manual_seed(0)
    preset = get_method("freepoint").default_config("cpu-small", **FAST).train
    backbone = segmenter_from_preset(preset).backbone
    meta = {"method": "csc", "id": FEATURES_ID, "input": input_metadata(preset), "data": {"dataset": "synthetic"}}
    path = save_model_checkpoint(base / "ckpt" / f"{FEATURES_ID}-backbone.ckpt", backbone, meta)
    register_checkpoint(base / "ckpt" / "index.json", FEATURES_ID, meta, {"backbone": path})
    return base, path


def test_the_features_checkpoint_is_a_file_or_an_index_id(features_ckpt):
    base, path = features_ckpt
    assert find_backbone(str(path), base / "elsewhere") == path
    assert find_backbone(FEATURES_ID, base / "ckpt") == path.resolve()
    with pytest.raises(ConfigError, match=r"deep_features=csc-nope: no such file and no entry of .*index.json"):
        find_backbone("csc-nope", base / "ckpt", "deep_features=csc-nope")


def test_a_deep_feature_run_labels_with_them_and_every_checkpoint_says_so(features_ckpt):
    base, path = features_ckpt
    store = MemoryStore([generate_room(s, SyntheticConfig(num_points=3000), name=f"synth_{s:04d}") for s in (0, 1)])
    method = get_method("freepoint")
    config = method.default_config("cpu-small", **FAST, deep_features=FEATURES_ID)
    cwd = os.getcwd()
    os.chdir(base)
    try:
        result = method.pretrain(store, config, Path("run"), checkpoints_dir=Path("ckpt"))
    finally:
        os.chdir(cwd)
    fkey = BackboneFeatures(path).cache_key
    recipe = result.metadata["pseudo_label_recipe"]
    assert sorted(recipe) == RECIPE_KEYS and recipe["features"] == ["xyz", "rgb", "normals", "deep"]
    assert recipe["deep_features"] == {"checkpoint": FEATURES_ID, "key": fkey, "method": "csc", "id": FEATURES_ID}
    assert recipe["affinities"]["emb"] == config.pseudo.alpha_emb > 0 and recipe["solver"] == "gaec"
    assert recipe["paper_differences"] == ["multicut solver gaec; the paper runs RAMA (§3.2)"]
    written = [base / "run" / s / "segmenter.ckpt" for s in ("step1", "step2")] + [result.backbone, result.segmenter]
    for ckpt in written:
        assert load_checkpoint(base / ckpt)[1]["pseudo_label_recipe"] == recipe, ckpt
    # the labels were made with the deep features: their cache key is that of features_fn's key
    for name in store.names():
        for sigma in config.pseudo.sigmas:
            with np.load(label_path(base / "run" / "pseudo-labels", name, sigma)) as saved:
                assert str(saved["key"]) == cache_key(store.load(name), config.pseudo, sigma, fkey)
                assert str(saved["key"]) != cache_key(store.load(name), config.pseudo, sigma, None)
