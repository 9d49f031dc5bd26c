"""The TrainPreset fields a one-stage backbone method never reads (pretext.training.UNREAD_TRAIN_FIELDS) are dead:
changing all of them at once trains the same weights, so refusing them (default_config) and skipping them in a
run's shared --pretrain-set (applicable_overrides) loses nothing and keeps them out of checkpoint ids."""

from __future__ import annotations

import pytest
import torch
from stores import MemoryStore

from freepoint_bench.data.synthetic import SyntheticConfig, generate_room
from freepoint_bench.errors import ConfigError
from freepoint_bench.models.checkpoint import load_checkpoint
from freepoint_bench.pretext.base import applicable_overrides, get_method
from freepoint_bench.pretext.training import UNREAD_TRAIN_FIELDS

# a valid value other than cpu-small's for every unread field
CHANGED = {"num_queries": 7, "decoder_hidden": 16, "decoder_layers": 2, "decoder_heads": 2, "decoder_ffn": 32,
           "query_features": False, "spatial_prior": False, "spatial_scale": 0.7, "spatial_relative": False,
           "voxels_per_query": 50.0, "min_instance_voxels": 5, "max_loss_points": 500, "epochs1": 4, "epochs2": 5,
           "lr": 0.5, "weight_decay": 0.3, "schedule": "cosine", "onecycle_pct_start": 0.6}


def test_every_unread_field_has_a_changed_value():
    assert set(CHANGED) == set(UNREAD_TRAIN_FIELDS)


@pytest.fixture(scope="module")
def store():
    cfg = SyntheticConfig(num_points=1500)
    return MemoryStore([generate_room(seed, cfg, name=f"synth_{seed:04d}") for seed in (0, 1)])


@pytest.mark.parametrize("name", ["pointcontrast", "csc", "depthcontrast", "supervised"])
def test_changing_every_unread_field_trains_the_same_weights(name, store, tmp_path):
    method = get_method(name)
    config = method.default_config("cpu-small", epochs=1)
    changed = config.model_copy(update={"train": config.train.with_(**CHANGED)})
    weights = []
    for tag, cfg in (("default", config), ("changed", changed)):
        result = method.pretrain(store, cfg, tmp_path / tag, checkpoints_dir=tmp_path / tag / "ckpt")
        weights.append(load_checkpoint(result.backbone)[0])
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key


def test_refused_in_default_config_and_skipped_in_a_shared_override():
    method = get_method("pointcontrast")
    for key in ("num_queries", "train.num_queries", "lr", "epochs2"):
        with pytest.raises(ConfigError, match="PointContrastConfig does not read training preset field"):
            method.default_config("cpu-small", **{key: CHANGED[key.removeprefix("train.")]})
    kept, skipped = applicable_overrides(method, {"epochs1": 2, "epochs2": 1, "num_queries": 20, "max_points": None})
    assert kept == {"epochs": 2, "max_points": None} and set(skipped) == {"epochs2", "num_queries"}
    freepoint = get_method("freepoint")
    kept, skipped = applicable_overrides(freepoint, {"epochs1": 2, "epochs": 3, "num_queries": 20})
    assert kept == {"epochs1": 2, "num_queries": 20} and set(skipped) == {"epochs"}
    with pytest.raises(ConfigError, match="FreePoint does not read 'epochs': it trains in two steps"):
        freepoint.default_config("cpu-small", epochs=3)
    with pytest.raises(ConfigError, match="unknown PointContrastConfig field 'epoch'"):
        method.default_config("cpu-small", epoch=3)  # a typo is still refused


def test_a_shared_override_of_another_methods_config_is_skipped_and_a_typo_still_refused():
    """`run --methods freepoint,pointcontrast --pretrain-set deep_features=...` (FreePoint's field): skipped for
    PointContrast with the owner named, applied to FreePoint; PointContrast's `temperature` the other way round; a
    key of no method's config reaches default_config, which refuses it (before: every such run was refused)."""
    shared = {"deep_features": "csc-scannet-0123456789", "pseudo.alpha_emb": 0.5, "temperature": 0.1, "epoch": 3}
    kept, skipped = applicable_overrides(get_method("pointcontrast"), shared)
    assert kept == {"temperature": 0.1, "epoch": 3}
    assert set(skipped) == {"deep_features", "pseudo.alpha_emb"} and "freepoint" in skipped["deep_features"]
    kept, skipped = applicable_overrides(get_method("freepoint"), shared)
    assert kept == {"deep_features": "csc-scannet-0123456789", "pseudo.alpha_emb": 0.5, "epoch": 3}
    assert set(skipped) == {"temperature"} and "pointcontrast" in skipped["temperature"]
