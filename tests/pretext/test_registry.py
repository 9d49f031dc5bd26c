"""The pretext registry: methods are found through the freepoint_bench.pretext entry points."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from freepoint_bench.errors import ConfigError
from freepoint_bench.pretext import base
from freepoint_bench.pretext.base import PretextMethod, available_methods, get_method


def test_freepoint_is_registered_and_loads():
    assert "freepoint" in available_methods()
    method = get_method("freepoint")
    assert method.name == "freepoint"
    assert isinstance(method, PretextMethod)


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(ConfigError) as err:
        get_method("no-such-method")
    assert "no-such-method" in str(err.value) and "freepoint" in str(err.value)


def test_broken_entry_point_is_a_config_error(monkeypatch):
    broken = EntryPoint(name="broken", value="freepoint_bench.no_such_module:X", group=base.ENTRY_POINT_GROUP)
    monkeypatch.setattr(base, "_entry_points", lambda: {"broken": broken})
    with pytest.raises(ConfigError, match="broken"):
        get_method("broken")


def test_entry_point_that_is_not_a_method_is_rejected(monkeypatch):
    not_a_method = EntryPoint(name="odd", value="collections:OrderedDict", group=base.ENTRY_POINT_GROUP)
    monkeypatch.setattr(base, "_entry_points", lambda: {"odd": not_a_method})
    with pytest.raises(ConfigError, match="not a PretextMethod"):
        get_method("odd")
