"""Training presets: paper values, CPU preset, validated overrides."""

from __future__ import annotations

import pytest

from freepoint_bench.engine.presets import PRESETS, TrainPreset, get_preset
from freepoint_bench.errors import ConfigError


def test_paper_preset_has_the_paper_values():
    p = get_preset("paper")
    assert (p.epochs1, p.epochs2) == (100, 10)  # §4
    assert p.voxel_size_m == pytest.approx(0.02)
    assert p.backbone == "34C"
    assert p.num_queries == 100
    assert p.accelerator == "gpu"


def test_cpu_preset_is_small_and_on_cpu():
    p = get_preset("cpu-small")
    assert p.accelerator == "cpu" and p.precision == "32-true"
    assert p.backbone == "small"
    assert p.voxel_size_m >= 0.04
    assert p.decoder_hidden < get_preset("paper").decoder_hidden
    assert p.epochs1 < 100


def test_overrides_including_nested_fields():
    p = get_preset("cpu-small", epochs1=3, **{"augment.rotate_z": False})
    assert p.epochs1 == 3 and p.augment.rotate_z is False
    q = p.with_(num_queries=4)
    assert q.num_queries == 4 and q.epochs1 == 3 and q.augment.rotate_z is False
    assert p.num_queries != 4  # frozen: with_ copies


@pytest.mark.parametrize(
    "overrides, field",
    [({"voxel_size_m": 0.0}, "voxel_size_m"), ({"epochs1": 0}, "epochs1"), ({"nope": 1}, "nope"),
     ({"augment.scale_min": 2.0}, "augment")],
)
def test_bad_overrides_raise_config_error_naming_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field):
        get_preset("cpu-small", **overrides)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="cpu-small"):
        get_preset("huge")


def test_every_preset_validates():
    for name in PRESETS:
        assert isinstance(get_preset(name), TrainPreset)
