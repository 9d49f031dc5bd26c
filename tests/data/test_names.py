"""Scene name → file name: real-style names keep the file and folder names they had on disk before one owner."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from freepoint_bench.data.names import (
    decode_name,
    decode_name_underscored,
    encode_name,
    encode_name_underscored,
)
from freepoint_bench.data.scene import Scene
from freepoint_bench.data.store import SceneStore
from freepoint_bench.errors import DataError
from freepoint_bench.evaluation.benchmark_io import list_prediction_scenes, write_predictions
from freepoint_bench.evaluation.predictions import Predictions
from freepoint_bench.freepoint.config import PseudoLabelConfig
from freepoint_bench.freepoint.pipeline import cache_key, label_path

# name → (scene cache file stem, pseudo-label folder, benchmark submission stem), computed with the code
# before the encodings had one owner (commit f5fcfa2): existing caches and submissions must keep these names.
REAL_NAMES = {
    "Area_1/office_1": ("Area_1%2Foffice_1", "Area_1__office_1", "Area_1__office_1"),
    "Area_5/conferenceRoom_2": ("Area_5%2FconferenceRoom_2", "Area_5__conferenceRoom_2", "Area_5__conferenceRoom_2"),
    "Area_5/WC_1": ("Area_5%2FWC_1", "Area_5__WC_1", "Area_5__WC_1"),
    "Area_3/hallway_10": ("Area_3%2Fhallway_10", "Area_3__hallway_10", "Area_3__hallway_10"),
    "scene0000_00": ("scene0000_00", "scene0000_00", "scene0000_00"),
    "scene0707_00": ("scene0707_00", "scene0707_00", "scene0707_00"),
    "synth_0007": ("synth_0007", "synth_0007", "synth_0007"),
    "synthetic_3": ("synthetic_3", "synthetic_3", "synthetic_3"),
    "room-1.v2": ("room-1.v2", "room-1.v2", "room-1.v2"),
    "ü/ñ": ("%C3%BC%2F%C3%B1", "ü__ñ", "ü__ñ"),
}


@pytest.mark.parametrize("name", sorted(REAL_NAMES))
def test_real_names_keep_their_file_names(tmp_path, name):
    store_stem, label_folder, submission_stem = REAL_NAMES[name]
    assert SceneStore(tmp_path).path_of(name).name == f"{store_stem}.npz"
    assert label_path(tmp_path, name, 0.9) == tmp_path / label_folder / "sigma_0.9000.npz"
    written = write_predictions(tmp_path / "preds", name, Predictions.empty(3))
    assert written.name == f"{submission_stem}.txt"
    assert list_prediction_scenes(tmp_path / "preds") == [name]


def test_pseudo_label_cache_key_is_unchanged():
    # the key decides whether hours of multicut are reused: a change must be a deliberate FORMAT_VERSION bump
    xyz = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    scene = Scene("Area_1/office_1", xyz, np.full((4, 3), 0.5, np.float32))
    assert cache_key(scene, PseudoLabelConfig(), 0.9, None) == "a80076a5da021ade"
    assert cache_key(scene, PseudoLabelConfig(), 0.9, "fpfh") == "d23e56591a4e0521"


def _every_name(alphabet: str, longest: int) -> list[str]:
    return ["".join(t) for n in range(1, longest + 1) for t in itertools.product(alphabet, repeat=n)]


@pytest.mark.parametrize("encode, decode", [(encode_name, decode_name),
                                            (encode_name_underscored, decode_name_underscored)])
def test_both_encodings_are_lossless_and_safe(encode, decode):
    names = _every_name("a_/ %.ü~5", 4)  # every name of up to 4 of the characters that collided or are special
    encoded = [encode(name) for name in names]
    assert len(set(encoded)) == len(names)
    assert [decode(e) for e in encoded] == names
    assert not [e for e in encoded if "/" in e or e in (".", "..")]
    if encode is encode_name_underscored:  # benchmark submissions split their lines at whitespace
        assert not [e for e in encoded if any(ch.isspace() for ch in e)]


def test_underscored_names_change_only_where_they_collided():
    # what changed: the characters the lossy folder encoding wrote as '_', and '_' runs that read as '/'
    assert [encode_name_underscored(n) for n in ("a b", "a_b", "a/b", "a__b", "a~b", "..")] == [
        "a%20b", "a_b", "a__b", "a%5F%5Fb", "a~b", "%2E."]
    with pytest.raises(DataError, match="scene name is empty"):
        encode_name_underscored("")
