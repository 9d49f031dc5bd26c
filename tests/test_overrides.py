"""The one override function and the one validation message (freepoint_bench.config)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field

from freepoint_bench.config import apply_overrides, field_paths, parse_overrides, validated, validation_message
from freepoint_bench.engine.presets import get_preset
from freepoint_bench.errors import ConfigError


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    a: int = 1
    b: float = Field(0.5, gt=0)


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    x: str = "s"
    inner: Inner = Inner()


def test_parse_overrides_types_values_as_toml_and_keeps_bare_words():
    assert parse_overrides(["a=1", "b=0.5", "c=true", "d=gaec-kl", "e=none", " f = [1, 2] "]) == {
        "a": 1, "b": 0.5, "c": True, "d": "gaec-kl", "e": None, "f": [1, 2]}
    with pytest.raises(ConfigError, match="not key=value"):
        parse_overrides(["novalue"])


def test_apply_overrides_sets_dotted_keys_without_touching_the_base():
    base = {"x": "s", "inner": Inner(a=2)}
    data = apply_overrides(base, {"inner.b": 2.0, "x": "t"}, Outer, "outer")
    assert data == {"x": "t", "inner": {"a": 2, "b": 2.0}}
    assert base["inner"] == Inner(a=2)  # the caller's base is unchanged
    assert validated(Outer, data, "outer") == Outer(x="t", inner=Inner(a=2, b=2.0))


@pytest.mark.parametrize("key", ["y", "inner.c", "x.a", "inner.a.b"])
def test_apply_overrides_refuses_unknown_keys_naming_the_known_ones(key):
    with pytest.raises(ConfigError) as exc:
        apply_overrides({}, {key: 1}, Outer, "outer")
    assert str(exc.value) == f"unknown outer field {key!r}; known: inner.a, inner.b, x"


def test_validation_message_is_one_line_with_the_path_and_the_value():
    with pytest.raises(ConfigError) as exc:
        validated(Outer, {"inner": {"b": -1}}, "outer")
    assert str(exc.value) == "invalid outer: inner.b: Input should be greater than 0 (got -1)"
    assert "\n" not in validation_message(ValueError("plain")) and validation_message(ValueError("plain")) == "plain"


def test_field_paths_expand_nested_models():
    assert field_paths(Outer) == ["inner.a", "inner.b", "x"]


def test_training_preset_overrides_go_through_it():
    with pytest.raises(ConfigError, match="unknown training preset field 'augment.spin'; known: .*augment.rotate_z"):
        get_preset("cpu-small", **{"augment.spin": True})
    with pytest.raises(ConfigError, match=r"invalid training preset: lr: Input should be greater than 0 \(got -1\)"):
        get_preset("cpu-small", lr=-1)


def test_the_fine_tuning_and_freepoint_configs_route_bare_training_keys_and_refuse_unknown_ones():
    from freepoint_bench.harness.finetune import finetune_config
    from freepoint_bench.pretext.base import get_method

    keys = {"loss.dice": 3.0, "train.seed": 4, "augment.flip_xy": False}
    ft = finetune_config("cpu-small", lr=1e-3, epochs=2, **keys)
    assert (ft.train.lr, ft.epochs, ft.loss.dice, ft.train.seed, ft.train.augment.flip_xy) == (1e-3, 2, 3.0, 4, False)
    fp = get_method("freepoint").default_config("cpu-small", epochs1=3, **{"pseudo.sigma_low": 0.8, "loss.box": 2.0})
    assert (fp.train.epochs1, fp.pseudo.sigma_low, fp.loss.box) == (3, 0.8, 2.0)
    for build, what in ((lambda **o: finetune_config("cpu-small", **o), "fine-tuning config"),
                        (lambda **o: get_method("freepoint").default_config("cpu-small", **o), "FreePoint config")):
        with pytest.raises(ConfigError, match=f"unknown {what} field 'loss.dicey'; known: .*loss.dice"):
            build(**{"loss.dicey": 1.0})
        with pytest.raises(ConfigError, match=f"unknown {what} field 'lrr'"):
            build(lrr=1.0)  # a bare key of no group is refused, not passed to the training preset
        with pytest.raises(ConfigError, match=rf"invalid {what}: train.lr: Input should be greater than 0 \(got -1\)"):
            build(lr=-1)
