"""Hostile input, fuzzed with hypothesis: every reader, the protocol TOML, config overrides and split files either
give a valid result (checked against an independent reading where there is one) or the project's one-line error
naming the file; never a traceback from inside a library, never silently wrong output.

A bounded number of examples per kind (FUZZ_EXAMPLES, default 40; `make test-faults-long` runs 400), no deadline.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from freepoint_bench.errors import ConfigError, DataError

from .conftest import private_protocols, record_figures

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
COUNTS: dict[str, dict[str, int]] = {}


def count(kind: str, outcome: str) -> None:
    COUNTS.setdefault(kind, {})
    COUNTS[kind][outcome] = COUNTS[kind].get(outcome, 0) + 1


@pytest.fixture(scope="module", autouse=True)
def _figures():
    yield
    for kind, outcomes in sorted(COUNTS.items()):
        record_figures(f"fuzz:{kind}", {"cases": sum(outcomes.values()), "outcomes": outcomes})


def one_line(e: Exception, *names: str) -> None:
    text = str(e)
    assert "\n" not in text, text
    assert any(n in text for n in names), f"{text!r} names none of {names}"


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="fuzz-"))


def valid_scene(scene) -> None:
    """A Scene that came back must be what the Scene type promises: finite, matching lengths."""
    n = scene.num_points
    assert n > 0 and scene.xyz.shape == (n, 3) and scene.rgb.shape == (n, 3)
    assert np.isfinite(scene.xyz).all() and np.isfinite(scene.rgb).all()
    assert scene.rgb.min() >= 0 and scene.rgb.max() <= 1
    for labels in (scene.semantic, scene.instance):
        assert labels is None or (labels.shape == (n,) and labels.dtype.kind in "iu")


# ---------------------------------------------------------------------------------------------- PLY

floats = st.one_of(st.floats(-1e3, 1e3, width=32), st.sampled_from([math.nan, math.inf, -math.inf, 0.0]))
finite_floats = st.floats(-1e3, 1e3, width=32)


@st.composite
def ply_bytes(draw) -> bytes:
    """A PLY (ascii or binary) of a few points, some values NaN / inf, then maybe damaged: truncated, its vertex
    count changed, bytes flipped, or replaced by garbage."""
    from plyfile import PlyData, PlyElement

    n = draw(st.integers(1, 12))
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    if draw(st.booleans()):
        fields += [(c, draw(st.sampled_from(["u1", "f4"]))) for c in ("red", "green", "blue")]
    if draw(st.booleans()):
        fields += [("nx", "f4"), ("ny", "f4"), ("nz", "f4")]
    vertices = np.zeros(n, dtype=fields)
    values = floats if draw(st.integers(0, 3)) == 0 else finite_floats  # NaN / inf in a quarter of the clouds
    for key, kind in fields:
        if kind == "f4" and key in ("red", "green", "blue"):
            column = st.floats(0, 1, width=32) if draw(st.booleans()) else values
        else:
            column = st.integers(0, 255) if kind == "u1" else values
        vertices[key] = draw(st.lists(column, min_size=n, max_size=n))
    path = scratch_dir() / "a.ply"
    PlyData([PlyElement.describe(vertices, "vertex")], text=draw(st.booleans())).write(str(path))
    data = path.read_bytes()
    shutil.rmtree(path.parent)
    damage = draw(st.sampled_from(["none", "none", "truncate", "count", "flip", "garbage"]))
    if damage == "truncate":
        data = data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    elif damage == "count":
        data = data.replace(f"element vertex {n}".encode(), f"element vertex {draw(st.integers(0, 10**6))}".encode())
    elif damage == "flip":
        out = bytearray(data)
        for i in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=4)):
            out[i] ^= draw(st.integers(1, 255))
        data = bytes(out)
    elif damage == "garbage":
        data = draw(st.binary(min_size=0, max_size=400))
    return data


@FUZZ
@given(data=ply_bytes())
def test_ply(data):
    from freepoint_bench.data.readers.ply import read_point_file

    folder = scratch_dir()
    path = folder / "cloud.ply"
    path.write_bytes(data)
    try:
        scene = read_point_file(path)
    except DataError as e:
        one_line(e, str(path))
        count("ply", "refused")
    else:
        valid_scene(scene)
        count("ply", "read")
    finally:
        shutil.rmtree(folder)


# ---------------------------------------------------------------------------------------------- VoteNet npy

dtypes = st.sampled_from(["float32", "float64", "int32", "int64", "uint8", "bool", "complex64", "U3", "object"])
MUTATIONS = ["shape", "dtype", "length", "nan", "bytes", "missing"]


def mutate(draw, arr: np.ndarray, how: str):
    """Returns arr damaged one way (or raw bytes for "bytes")."""
    if isinstance(arr, bytes) or arr.ndim == 0:
        return arr
    if how == "shape":
        return arr.reshape(-1) if arr.ndim == 2 else arr.reshape(-1, 1)
    if how == "dtype":
        dtype = draw(dtypes)
        return np.array([{"x": 1}] * len(arr), dtype=object) if dtype == "object" else arr.astype(dtype)
    if how == "length":
        if draw(st.booleans()):
            return arr[: draw(st.integers(0, max(len(arr) - 1, 0)))]
        return np.concatenate([arr, arr[:1]])
    if how == "nan" and arr.dtype.kind == "f":
        out = arr.copy()
        out.reshape(-1)[draw(st.integers(0, out.size - 1))] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        return out
    if how == "bytes":
        return draw(st.binary(max_size=200))
    return arr


@FUZZ
@given(n=st.integers(1, 10), data=st.data())
def test_votenet_npy(n, data):
    from freepoint_bench.data.readers.scannet_npy import ScanNetNpyReader

    folder = scratch_dir()
    arrays = {
        "vert": np.concatenate([np.array(data.draw(st.lists(st.lists(finite_floats, min_size=3, max_size=3), min_size=n,
                                                                     max_size=n)), dtype=np.float32),
                                np.array(data.draw(st.lists(st.lists(st.integers(0, 255), min_size=3, max_size=3),
                                                            min_size=n, max_size=n)), dtype=np.float32)], axis=1),
        "sem_label": np.array(data.draw(st.lists(st.integers(0, 40), min_size=n, max_size=n)), dtype=np.int64),
        "ins_label": np.array(data.draw(st.lists(st.integers(0, 5), min_size=n, max_size=n)), dtype=np.int64),
    }
    try:
        for _ in range(data.draw(st.integers(0, 2))):
            key, how = data.draw(st.sampled_from(sorted(arrays))), data.draw(st.sampled_from(MUTATIONS))
            if how == "missing" and key != "vert":
                arrays.pop(key, None)  # labels are optional
            elif key in arrays:
                arrays[key] = mutate(data.draw, arrays[key], how)
        for key, arr in arrays.items():
            path = folder / f"scene0000_00_{key}.npy"
            path.write_bytes(arr) if isinstance(arr, bytes) else np.save(path, arr, allow_pickle=True)
        try:
            scene = ScanNetNpyReader().read_scene(folder, "scene0000_00")
        except DataError as e:
            one_line(e, str(folder))
            count("votenet npy", "refused")
        else:
            valid_scene(scene)
            vert = np.load(folder / "scene0000_00_vert.npy")
            assert np.array_equal(scene.xyz, vert[:, :3].astype(np.float32))  # what was written, not something else
            if scene.instance is not None:
                ins = np.load(folder / "scene0000_00_ins_label.npy")
                assert np.array_equal(scene.instance, np.where(ins == 0, -1, ins))
            count("votenet npy", "read")
    finally:
        shutil.rmtree(folder)


# ---------------------------------------------------------------------------------------------- S3DIS text

token = st.one_of(
    st.floats(-100, 100, allow_nan=False).map(lambda v: f"{v:.3f}"),
    st.integers(0, 255).map(str),
    st.sampled_from(["nan", "inf", "-inf", "1.2.3", "-", "e", "300", "-1", "1e3", "abc", ",", ""]),
)
good_line = st.tuples(st.lists(st.floats(-100, 100, allow_nan=False).map(lambda v: f"{v:.3f}"), min_size=3,
                               max_size=3), st.lists(st.integers(0, 255).map(str), min_size=3, max_size=3)).map(
    lambda parts: " ".join(parts[0] + parts[1]))
line = st.one_of(
    good_line, good_line, good_line,
    good_line.map(lambda ln: ln.replace(" ", "\x00 ", 1)),  # a control byte in a readable line
    st.lists(token, min_size=0, max_size=9).map(lambda ts: " ".join(ts)),
    st.binary(max_size=30).map(lambda b: b.decode("latin-1")),  # control bytes, non-ASCII
)
annotation = st.one_of(st.just(b""), st.lists(line, max_size=12).map(
    lambda ls: "\n".join(ls).encode("latin-1") + b"\n"), st.binary(max_size=200))


def expected_rows(data: bytes) -> int:
    """Counts the lines the S3DIS repair rules keep, read independently: control bytes become spaces, then the line
    must be 6 finite numbers with rgb in 0..255."""
    kept = 0
    for raw in data.split(b"\n"):
        text = bytes(32 if (b < 32 and b not in (9, 13, 10)) or b >= 127 else b for b in raw)
        tokens = text.split()
        if len(tokens) != 6:
            continue
        try:
            row = [float(t) for t in tokens]
        except ValueError:
            continue
        if all(math.isfinite(v) for v in row) and all(0 <= v <= 255 for v in row[3:]):
            kept += 1
    return kept


@FUZZ
@given(files=st.lists(annotation, min_size=0, max_size=3))
def test_s3dis_text(files):
    from freepoint_bench.data.readers.s3dis import S3DISReader

    root = scratch_dir()
    ann = root / "Area_1" / "room_1" / "Annotations"
    ann.mkdir(parents=True)
    for i, data in enumerate(files):
        (ann / f"chair_{i + 1}.txt").write_bytes(data)
    want = [expected_rows(d) for d in files]
    try:
        scene = S3DISReader().read_scene(root, "Area_1/room_1")
    except DataError as e:
        one_line(e, str(ann))
        assert sum(want) == 0, f"refused a room with {sum(want)} readable lines"
        count("s3dis text", "refused")
    else:
        valid_scene(scene)
        assert scene.num_points == sum(want)  # every readable line kept, every other one dropped
        dropped = sum(len(d.split(b"\n")) for d in files) > scene.num_points + len(files)
        assert not dropped or scene.meta["repairs"], "lines were dropped without a repair record"
        count("s3dis text", "repaired" if scene.meta["repairs"] else "read")
    finally:
        shutil.rmtree(root)


# ---------------------------------------------------------------------------------------------- protocol TOML

VALID = {
    "description": "fuzz", "dataset": "s3dis", "train_groups": ["Area_1", "Area_2"], "eval_groups": ["Area_5"],
    "unit": "masks", "fraction": 0.2, "selection_seed": 0, "split_file": "splits/x.json", "preset": "cpu-small",
    "eval": {"classes": "s3dis", "min_region_size": 100},
}
values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), floats, st.text(max_size=12)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text("abcdefghij_", min_size=1, max_size=6),
                                                                inner, max_size=3),
    max_leaves=6,
)


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    raise TypeError(v)


def toml_text(doc: dict) -> str:
    return "".join(f"{k} = {toml_value(v)}\n" for k, v in doc.items() if v is not None)


@st.composite
def protocol_text(draw) -> str:
    doc = dict(VALID)
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["drop", "unknown", "retype", "range"]))
        key = draw(st.sampled_from(sorted(VALID)))
        if op == "drop":
            doc.pop(key, None)
        elif op == "unknown":
            doc[draw(st.text("xyz_", min_size=1, max_size=5))] = draw(values)
        elif op == "retype":
            doc[key] = draw(values)
        else:
            doc[draw(st.sampled_from(["fraction", "selection_seed", "expected_eval_scenes"]))] = draw(
                st.sampled_from([0, -1, 1.5, 2, 10**9, -0.0, math.nan, math.inf]))
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=200))  # not TOML at all
    return toml_text(doc)


@FUZZ
@given(text=protocol_text())
def test_protocol_toml(text):
    from freepoint_bench.harness.protocol import load_protocol

    folder = scratch_dir()
    path = folder / "fuzzed.toml"
    path.write_bytes(text.encode("utf-8", errors="replace"))
    try:
        spec = load_protocol(path)
    except ConfigError as e:
        one_line(e, str(path))
        count("protocol toml", "refused")
    else:
        assert 0 < spec.fraction <= 1 and spec.selection_seed >= 0 and spec.unit in ("masks", "scenes", "full")
        assert not set(spec.train_groups) & set(spec.eval_groups)
        count("protocol toml", "accepted")
    finally:
        shutil.rmtree(folder)


# ---------------------------------------------------------------------------------------------- --set overrides

FT_KEYS = ["epochs", "lr", "num_queries", "batch_size", "max_points", "voxel_size_m", "loss.dice", "loss.bce",
           "inference.topk", "inference.score_threshold", "train.seed", "augment.rotate_z", "schedule", "backend",
           "no_such_field", "loss.no_such", "inference.", ".x", "train.", "precision"]
PT_KEYS = ["epochs1", "epochs2", "pseudo.sigma_low", "pseudo.k1", "pseudo.fps_ratio", "pseudo.solver", "loss.box",
           "train.lr", "pseudo.no_such", "nope"]
raw_values = st.one_of(
    st.sampled_from(["1", "0", "-1", "2.5", "1e-3", "nan", "inf", "-inf", "true", "none", "null", "[1, 2]",
                     "{a = 1}", '"text"', "gaec", "", "=", "1e400", "10000000000000000000000"]),
    st.text(max_size=12),
)


def finite(obj) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(finite(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return all(finite(v) for v in obj)
    return True


@FUZZ
@given(pairs=st.lists(st.tuples(st.sampled_from(FT_KEYS), raw_values), min_size=1, max_size=3))
def test_finetune_overrides(pairs):
    from freepoint_bench.freepoint.config import parse_overrides
    from freepoint_bench.harness.finetune import finetune_config

    try:
        config = finetune_config("cpu-small", **parse_overrides([f"{k}={v}" for k, v in pairs]))
    except ConfigError as e:
        one_line(e, "override", "config", "preset")
        count("finetune --set", "refused")
    else:
        dumped = config.model_dump(mode="json")
        assert finite(dumped), f"accepted non-finite values: {pairs}"
        assert config.epochs >= 1 and config.train.lr > 0 and config.train.num_queries >= 1
        count("finetune --set", "accepted")


@FUZZ
@given(pairs=st.lists(st.tuples(st.sampled_from(PT_KEYS), raw_values), min_size=1, max_size=3))
def test_pretrain_overrides(pairs):
    from freepoint_bench.freepoint.config import parse_overrides
    from freepoint_bench.pretext.base import get_method

    try:
        config = get_method("freepoint").default_config("cpu-small", **parse_overrides([f"{k}={v}" for k, v in pairs]))
    except ConfigError as e:
        one_line(e, "override", "config", "preset", "sigma")
        count("pretrain --set", "refused")
    else:
        assert finite(config.model_dump(mode="json")), f"accepted non-finite values: {pairs}"
        count("pretrain --set", "accepted")


def test_cli_override_errors_are_one_line(capsys, tmp_path):
    """Through bench.py itself: an unknown key and a wrong type each exit 2 with one line naming the field."""
    from freepoint_bench.cli import main

    for bad, field in (("no_such_field=1", "no_such_field"), ("epochs=many", "epochs"), ("lr=-1", "lr")):
        with pytest.raises(SystemExit) as exc:
            main(["finetune", "--protocol", "synthetic-s3dis-50pct-scenes", "--method", "scratch", "--set", bad,
                  "--results", str(tmp_path / "r"), "--cache", str(tmp_path / "c"), "--root", str(tmp_path)])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and field in err and "Traceback" not in err, err
        assert len([ln for ln in err.strip().splitlines() if ln.startswith("error")]) == 1, err


# ---------------------------------------------------------------------------------------------- split files

SCENES = ["Area_1/office_1", "Area_2/office_1", "Area_3/office_1", "Area_4/office_1", "Area_6/office_1"]
split_docs = st.one_of(
    values,
    st.fixed_dictionaries({"version": st.just(1), "protocol": st.just("synthetic-s3dis-50pct-scenes"),
                           "unit": st.just("scenes"), "fraction": st.just(0.5), "selection_seed": st.just(0),
                           "candidates": st.just(5),
                           "train_scenes": st.lists(st.sampled_from(SCENES + ["Area_9/x"]), min_size=0, max_size=5,
                                                    unique=True)}),
    st.fixed_dictionaries({"version": values, "protocol": st.just("synthetic-s3dis-50pct-scenes"),
                           "unit": st.sampled_from(["scenes", "masks", 3]), "fraction": st.sampled_from([0.5, "0.5"]),
                           "selection_seed": st.sampled_from([0, None]),
                           "train_scenes": st.one_of(values, st.lists(st.sampled_from(
                               ["Area_1/office_1", "Area_2/office_1", "Area_9/x", "Area_5/office_1"]), max_size=4)),
                           "candidates": values}),
)


@FUZZ
@given(doc=split_docs, sidecar=st.booleans())
def test_split_file(doc, sidecar, prepared):
    """A split file edited by hand with a matching sidecar (so the hash passes): its structure is still checked."""
    from freepoint_bench.harness.cells import fold_data
    from freepoint_bench.harness.protocol import canonical_json, load_protocol, load_split, sha256_bytes

    folder = scratch_dir()
    try:
        protocols = private_protocols(folder)
        spec = load_protocol("synthetic-s3dis-50pct-scenes", protocols)
        path = protocols / spec.split_file
        data = canonical_json(doc)
        path.write_bytes(data)
        if sidecar:
            Path(str(path) + ".sha256").write_text(sha256_bytes(data) + "\n")
        try:
            split, _ = load_split(spec, protocols)
            fold = fold_data(spec, prepared[2], split, 0)
        except (ConfigError, DataError) as e:
            one_line(e, str(path), spec.name)
            count("split file", "refused")
        else:
            assert fold.train and set(fold.train) <= set(doc["train_scenes"])
            assert not set(fold.train) & set(fold.eval)
            count("split file", "accepted")
    finally:
        shutil.rmtree(folder)


def _float_fields(model: type) -> list[str]:
    return [name for name, f in model.model_fields.items() if f.annotation in (float, float | None)]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_no_config_accepts_a_non_finite_number(bad):
    """Every float field of every user-set config refuses NaN / inf (one lr=inf trains on NaN without a word)."""
    from freepoint_bench.engine.presets import AugmentConfig, TrainPreset
    from freepoint_bench.freepoint.config import PseudoLabelConfig
    from freepoint_bench.harness.protocol import ProtocolSpec
    from freepoint_bench.models.inference import InferenceConfig
    from freepoint_bench.models.losses import LossConfig
    from freepoint_bench.pretext.base import get_method

    checked = 0
    for model in (TrainPreset, AugmentConfig, PseudoLabelConfig, LossConfig, InferenceConfig, ProtocolSpec):
        for name in _float_fields(model):
            with pytest.raises(Exception) as exc:
                model.model_validate({**({"name": "p", "dataset": "s3dis", "unit": "full", "train_groups": ["a"],
                                          "eval_groups": ["b"]} if model is ProtocolSpec else {}), name: bad})
            assert "finite" in str(exc.value), (model.__name__, name)
            checked += 1
    for method in ("pointcontrast", "csc", "depthcontrast", "scratch", "supervised"):
        cls = type(get_method(method).default_config("cpu-small"))
        for name in _float_fields(cls):
            with pytest.raises(ConfigError):
                get_method(method).default_config("cpu-small", **{name: bad})
            checked += 1
    assert checked > 30
    count("non-finite config fields", f"refused {bad}")
