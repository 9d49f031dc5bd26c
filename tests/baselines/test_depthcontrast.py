"""DepthContrast's embedding against brute force: the per-scene global max-pool and the projection head; its
views capped at the released pipeline's 20,000 points, seeded."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from baselines.depthcontrast import DepthContrastModule, projection_head
from baselines.pairs import PairDataset
from freepoint_bench.data.scene import Scene
from freepoint_bench.pretext.base import get_method


class Identity(nn.Module):
    """A stand-in backbone whose per-voxel features are its input features."""

    def forward(self, coords: torch.Tensor, feats: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(feats=feats)


def test_embed_max_pools_each_scene_then_applies_the_head_and_normalises():
    generator = torch.Generator().manual_seed(0)
    scene = torch.tensor([0, 2, 1, 0, 2, 2, 1, 0])  # rows of three scenes, interleaved
    coords = torch.cat([scene[:, None], torch.randint(0, 9, (8, 3), generator=generator)], 1).int()
    feats = torch.randn(8, 5, generator=generator)
    head = nn.Linear(5, 4)
    got = DepthContrastModule.embed(Identity(), head, coords, feats, num_scenes=3)
    for s in range(3):
        pooled = torch.tensor([max(float(feats[i, c]) for i in range(8) if scene[i] == s) for c in range(5)])
        torch.testing.assert_close(got[s], F.normalize(head(pooled), dim=0))


@pytest.mark.parametrize("relu", [False, True])
def test_projection_head_is_linear_linear_with_an_optional_relu(relu):
    torch.manual_seed(0)
    head = projection_head(6, 5, 3, relu)
    assert [type(m) for m in head] == [nn.Linear, *([nn.ReLU] if relu else []), nn.Linear]
    first, last = head[0], head[-1]
    x = torch.randn(4, 6)
    for row in range(4):
        hidden = [sum(float(first.weight[j, i]) * float(x[row, i]) for i in range(6)) + float(first.bias[j])
                  for j in range(5)]
        hidden = [max(h, 0.0) for h in hidden] if relu else hidden
        want = [sum(float(last.weight[o, j]) * hidden[j] for j in range(5)) + float(last.bias[o]) for o in range(3)]
        assert head(x)[row].tolist() == pytest.approx(want, abs=1e-5)


def test_both_presets_take_the_released_voxel_head_and_colour_input():
    paper = get_method("depthcontrast").default_config("paper")
    assert paper.head_relu is False and paper.use_rgb is True
    assert get_method("depthcontrast").default_config("cpu-small").use_rgb is True
    module = DepthContrastModule(get_method("depthcontrast").default_config("cpu-small"))
    for head in (module.head, module.key_head):
        assert [type(m) for m in head] == [nn.Linear, nn.Linear]


class OneScene:
    """A store of one scene."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene

    def load(self, name: str) -> Scene:
        return self.scene


def test_paper_views_never_exceed_the_released_20k_points_and_are_seeded():
    config = get_method("depthcontrast").default_config("paper")
    assert config.views.max_points == 20_000  # augment3d.py's ToTensor: every released view has 20,000 points
    rng = np.random.default_rng(0)
    # 150k points on a 6 m x 6 m floor: the 60% crop keeps ~55k cells of 2 cm, far above the cap
    xyz = np.c_[rng.uniform(0, 6, (150_000, 2)), rng.normal(0, 0.005, 150_000)]
    scene = Scene(name="hall", xyz=xyz, rgb=rng.uniform(0, 1, (150_000, 3)))
    dataset = PairDataset(OneScene(scene), ["hall"], config.train, config.views, mode="same")
    for epoch in range(3):
        pair = dataset.pair(scene, np.random.default_rng([config.train.seed, epoch, 0]))
        assert pair.a.num_points == pair.b.num_points == 20_000
        sample = dataset[(epoch, 0)]
        assert len(sample["a_coords"]) <= 20_000 and len(sample["b_coords"]) <= 20_000
    first, again, other = dataset[(0, 0)], dataset[(0, 0)], dataset[(1, 0)]
    for key in ("a_coords", "a_feats", "b_coords", "b_feats", "matches"):
        assert np.array_equal(first[key], again[key])
    assert not np.array_equal(first["a_coords"], other["a_coords"])
