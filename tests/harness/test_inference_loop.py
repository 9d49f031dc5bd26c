"""One inference loop (engine.predict.predict_scene) behind `bench.py predict` and the harness's evaluation, so an
inference setting means the same in both: superpoints were once honoured by `predict` and ignored by `run`."""

from __future__ import annotations

import numpy as np
import torch
from stores import MemoryStore

from freepoint_bench.data.synthetic import SyntheticConfig, generate_room
from freepoint_bench.engine.module import segmenter_from_preset
from freepoint_bench.engine.predict import predict_scene
from freepoint_bench.geometry.superpoints import SuperpointConfig, superpoints
from freepoint_bench.harness.finetune import finetune_config, predict_scenes


def test_run_and_predict_share_the_loop_and_honour_superpoints():
    scene = generate_room(0, SyntheticConfig(num_points=2000), name="synth_0000")
    store = MemoryStore([scene])
    few = {"inference.topk": 8, "inference.mask_threshold": 0.2}  # an untrained model's masks pass 0.2, not 0.5
    config = finetune_config("cpu-small", num_queries=8, **few, **{"inference.superpoints": {}})
    assert config.inference.superpoints == SuperpointConfig()
    torch.manual_seed(0)
    model = segmenter_from_preset(config.train).eval()
    ids = list(range(40, 40 + 20))  # dataset ids of the class indices
    harness = predict_scenes(model, store, [scene.name], config, ids, device="cpu")[scene.name]
    direct = predict_scene(model, scene, config.train, config.inference, "cpu")
    np.testing.assert_array_equal(harness.masks, direct.masks)
    np.testing.assert_array_equal(harness.labels, np.asarray(ids)[direct.labels])
    assert len(harness.masks) > 0
    # pooled over superpoints: every mask is a union of whole superpoints
    pieces = superpoints(scene.xyz, config.inference.superpoints)
    for mask in harness.masks:
        inside = np.bincount(pieces[mask], minlength=pieces.max() + 1)
        sizes = np.bincount(pieces, minlength=pieces.max() + 1)
        assert np.all((inside == 0) | (inside == sizes))
    plain = predict_scenes(model, store, [scene.name], finetune_config("cpu-small", num_queries=8, **few), ids,
                           device="cpu")[scene.name]
    assert not np.array_equal(plain.masks, harness.masks)  # the setting changes what run scores
