"""Shards: one parser and one slicer, and every door that takes a shard refuses a wrong one with the same line.
The process pool: one map_unordered that both scene pools (pseudo-labels, frame pairs) run on."""

from __future__ import annotations

import time

import pytest

from freepoint_bench.errors import ConfigError
from freepoint_bench.freepoint.config import PseudoLabelConfig
from freepoint_bench.freepoint.pipeline import run_pseudo_labels
from freepoint_bench.parallel import map_unordered, parse_shard, take_shard

REFUSAL = "shard 3/2: write it as i/n with 0 <= i < n (e.g. --shard 0/4)"


def test_shards_are_disjoint_and_cover_every_item():
    items = list(range(10))
    shards = [take_shard(items, i, 3) for i in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert parse_shard("2/3") == (2, 3) and take_shard(items, *parse_shard("0/1")) == items


@pytest.mark.parametrize("text, written", [("3/2", "3/2"), ("0/0", "0/0"), ("-1/2", "-1/2"), ("1", "'1'"),
                                           ("a/b", "'a/b'"), ("1/2/3", "'1/2/3'"), ("", "''")])
def test_wrong_shards_are_refused_naming_the_form(text, written):
    with pytest.raises(ConfigError) as refused:
        parse_shard(text)
    assert str(refused.value) == f"shard {written}: write it as i/n with 0 <= i < n (e.g. --shard 0/4)"


def test_every_door_refuses_a_wrong_shard_with_the_same_line(bench_cli, tmp_path):
    refusals = []
    for door in (lambda: parse_shard("3/2"), lambda: take_shard(["a"], 3, 2),
                 lambda: run_pseudo_labels({}, ["a"], PseudoLabelConfig(), (0.9,), tmp_path, shard=(3, 2))):
        with pytest.raises(ConfigError) as refused:
            door()
        refusals.append(str(refused.value))
    assert refusals == [REFUSAL] * 3
    for command in (["pseudo-labels", "--dataset", "synthetic", "--cache", tmp_path / "cache"],
                    ["run", "--methods", "scratch", "--protocols", "synthetic-s3dis-50pct-scenes", "--seeds", "0",
                     "--results", tmp_path / "results"]):
        code, _, err = bench_cli(*command, "--shard", "3/2")
        assert code == 2 and REFUSAL in err and "Traceback" not in err


def slow_square(x: int) -> int:
    """A pool task (module level: picklable); item 0 takes two seconds, the others none."""
    time.sleep(2.0 if x == 0 else 0.0)
    if x == 13:
        raise ValueError(f"{x} is unlucky")
    return x * x


def test_pool_yields_every_result_as_it_finishes_and_equals_the_serial_path():
    items = list(range(8))
    serial = list(map_unordered(slow_square, items, workers=1))
    assert serial == [x * x for x in items]  # one worker: here, in order
    pooled = list(map_unordered(slow_square, iter(items), workers=2, in_flight=3))  # lazy items, bounded
    assert sorted(pooled) == serial
    assert pooled[-1] == 0  # item 0 holds one worker while the other finishes the rest: it comes back last


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_item_raises_its_own_error_naming_the_item(workers):
    with pytest.raises(ValueError, match="13 is unlucky") as failed:
        list(map_unordered(slow_square, [5, 13, 6, 7], workers=workers, label=lambda x: f"item #{x}"))
    assert failed.value.__notes__ == ["while working on item #13"]
