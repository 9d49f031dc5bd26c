"""Device->host syncs of a training step: the decoder's FPS and the criterion read the device a fixed number of
times (not once per query, decoder step or scene), with the numbers they computed before."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from freepoint_bench.models.criterion import SetCriterion, targets_from_instance_ids
from freepoint_bench.models.decoder import fps
from freepoint_bench.models.losses import LossConfig, bce_loss, box_loss, dice_loss, mean_loss, normalise_scene
from freepoint_bench.models.matcher import hungarian_match, hungarian_match_all, matching_cost
from freepoint_bench.models.segmenter import TINY, InstanceSegmenter, SegmenterConfig
from freepoint_bench.models.voxels import collate

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_host_syncs  # noqa: E402


def _host_loop_fps(points: torch.Tensor, n: int) -> list[int]:
    """The farthest point sample as a host loop reads it, one chosen index at a time."""
    chosen, dist = [0], torch.full((len(points),), float("inf"), dtype=points.dtype)
    for _ in range(1, min(n, len(points))):
        dist = torch.minimum(dist, (points - points[chosen[-1]]).square().sum(1))
        chosen.append(int(torch.argmax(dist)))
    return [chosen[i % len(chosen)] for i in range(n)]


def test_fps_chooses_as_the_host_loop_and_never_reads_the_device():
    g = torch.Generator().manual_seed(0)
    points = torch.randint(0, 6, (300, 3), generator=g).float()  # a grid: many ties and repeated points
    for n in (1, 50, 300, 400):
        with bench_host_syncs.HostSyncCounter() as counter:
            chosen = fps(points, n)
        assert chosen.tolist() == _host_loop_fps(points, n)
        assert counter.total == 0, counter.counts


def test_hungarian_match_all_equals_one_match_per_cost_on_the_kept_columns():
    g = torch.Generator().manual_seed(1)
    costs = [torch.rand(6, 4, generator=g), torch.rand(3, 5, generator=g), torch.rand(4, 0), torch.rand(5, 3)]
    columns = [torch.tensor([True, False, True, True]), None, torch.zeros(0, dtype=torch.bool),
               torch.zeros(3, dtype=torch.bool)]
    costs[0][:, 1] = float("inf")  # a dropped column may hold anything
    with bench_host_syncs.HostSyncCounter() as counter:
        matches = hungarian_match_all(costs, columns)
    assert counter.total == 1, counter.counts  # one transfer for all
    kept = torch.tensor([0, 2, 3])
    rows, cols = hungarian_match(costs[0][:, kept])
    np.testing.assert_array_equal(matches[0][0], rows)
    np.testing.assert_array_equal(matches[0][1], kept.numpy()[cols])
    for got, expected in zip(matches[1], hungarian_match(costs[1]), strict=True):
        np.testing.assert_array_equal(got, expected)
    assert all(len(a) == 0 for m in matches[2:] for a in m)
    costs[1][0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        hungarian_match_all(costs, columns)


def _predictions(num_decoders: int, scenes: int = 2):
    rng = np.random.default_rng(0)
    xyz = [rng.uniform(0, [3, 2, 1], (400, 3)).astype(np.float32) for _ in range(scenes)]
    inst = [np.minimum(x[:, 0] // 0.8, 3).astype(np.int64) for x in xyz]
    inst[0][:50] = -1
    batch = collate(xyz, [np.ones_like(x) for x in xyz], voxel_size=0.1)
    torch.manual_seed(0)
    decoder = TINY.decoder.model_copy(update={"num_decoders": num_decoders})
    model = InstanceSegmenter(SegmenterConfig(backbone=TINY.backbone, decoder=decoder))
    targets = [targets_from_instance_ids(torch.from_numpy(i)) for i in inst]
    return model(batch), targets, batch


@pytest.mark.parametrize("box", [0.0, 1.0])
def test_criterion_reads_the_device_once_per_call_plus_its_box_selections(box):
    config = LossConfig(box=box)
    for num_decoders in (1, 2):
        outputs, targets, batch = _predictions(num_decoders)
        steps = len(outputs.aux) + 1
        with bench_host_syncs.HostSyncCounter() as counter:
            SetCriterion(config)(outputs, targets, batch)
        # the costs' transfer; with Lbox, the targets' corners per scene and the predicted masks' points per
        # step and scene
        expected = 1 + (len(targets) + steps * len(targets) if box else 0)
        assert counter.total == expected, (num_decoders, counter.counts)


def test_criterion_terms_equal_one_match_per_scene_and_the_losses_on_the_matches():
    config = LossConfig(aux=False)
    outputs, targets, batch = _predictions(1, scenes=1)
    terms = SetCriterion(config)(outputs, targets, batch)
    logits = outputs.final.masks[0][:, batch.point_to_voxel[0]]
    target, xyz = targets[0].masks.float(), normalise_scene(batch.point_xyz[0])
    rows, cols = hungarian_match(matching_cost(logits, target, xyz, config, outputs.final.objectness[0]))
    ml, mt = logits[rows], target[cols]
    expected = {"dice": dice_loss(ml, mt), "bce": bce_loss(ml, mt), "mean": mean_loss(ml, mt, xyz),
                "box": box_loss(ml, mt, xyz, config.box_temperature)}
    for name, value in expected.items():
        torch.testing.assert_close(terms[name], value.sum() / len(target), msg=name)


def test_the_benchmark_counts_each_component_of_a_step():
    counts = bench_host_syncs.step_syncs(points=1500, scenes=2, queries=12, backbone="tiny", voxel_size=0.1,
                                         device=torch.device("cpu"))
    assert list(counts) == ["backbone", "decoder", "criterion", "backward"]
    assert sum(counts["criterion"].values()) == 1 + 2 + 12 * 2  # Mask3D's decoder: 12 steps, Lbox on
    assert counts["decoder"]["__int__"] < 12  # not one per query
