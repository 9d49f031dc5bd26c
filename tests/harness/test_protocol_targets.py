"""ProtocolTargets decides each room's instances once: the same targets as a pass per instance, never recomputed
for the same room, never served to another selection or to other labels under the same name."""

from __future__ import annotations

import numpy as np
import pytest

from freepoint_bench.data.classes import SCANNET_INSTANCE_IDS
from freepoint_bench.data.scene import Scene
from freepoint_bench.harness import finetune
from freepoint_bench.harness.finetune import ProtocolTargets, class_vocabulary
from freepoint_bench.harness.protocol import EvalRules, instance_name


def _room(seed: int, dataset: str, num_instances: int = 40, num_points: int = 20_000, huge_ids: bool = False) -> Scene:
    """A room of `num_instances` instances of random semantic ids (unlabelled points and unlabelled instance ids
    among them), ids below 10,000 with recorded names (or above 2^40, named by their ids)."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(10_000, size=num_instances, replace=False) + (1 << 40 if huge_ids else 0)
    instance = np.where(rng.random(num_points) < 0.1, -1, ids[rng.integers(0, num_instances, num_points)])
    semantic = rng.integers(-1, 41, num_points) if dataset == "scannet" else rng.integers(-1, 13, num_points)
    # a few instances whose every point lies outside any vocabulary: no targets
    semantic[np.isin(instance, ids[:3])] = -1
    meta = {"dataset": dataset} if huge_ids else {"dataset": dataset, "instance_names": [f"object_{i}" for i in
                                                                                         range(10_000)]}
    return Scene(name="Area_1/office_1", xyz=rng.random((num_points, 3), dtype=np.float32),
                 rgb=rng.random((num_points, 3), dtype=np.float32), semantic=semantic, instance=instance, meta=meta)


def _names(scene: Scene) -> list[str]:
    """Returns the names of the scene's instances, in id order."""
    return [instance_name(scene, int(i)) for i in np.unique(scene.instance[scene.instance >= 0])]


def _oracle(rules: EvalRules, kept: frozenset[str] | None, scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Returns (instance, ignore) by one pass over the points per instance (the definition, written plainly)."""
    lookup = {sem: k for k, sem in enumerate(class_vocabulary(rules)[0])}
    sem = np.array([lookup.get(int(s), -1) for s in scene.semantic])
    instance, ignore = scene.instance.copy(), np.zeros(scene.num_points, dtype=bool)
    for inst in np.unique(scene.instance[scene.instance >= 0]):
        members = scene.instance == inst
        evaluated = (sem[members] >= 0).any()
        if kept is not None and instance_name(scene, int(inst)) not in kept and evaluated:
            ignore |= members
        if not evaluated or ignore[members].any():
            instance[members] = -1
    return instance, ignore


@pytest.mark.parametrize(("dataset", "huge_ids"), [("s3dis", False), ("scannet", False), ("scannet", True)])
@pytest.mark.parametrize("masks", [False, True])
def test_targets_equal_a_pass_per_instance(dataset, huge_ids, masks):
    scene = _room(1, dataset, huge_ids=huge_ids)
    rules = EvalRules(classes=dataset)
    kept = frozenset(_names(scene)[::3]) if masks else None
    targets = ProtocolTargets(rules, None if kept is None else {scene.name: sorted(kept)})(scene)
    instance, ignore = _oracle(rules, kept, scene)
    assert (targets.instance == instance).all() and (targets.ignore == ignore).all()
    assert ignore.any() == masks and (instance >= 0).any() and (targets.instance[ignore] == -1).all()
    if dataset == "scannet":  # class index labels of the 18 instance classes
        assert set(np.unique(targets.semantic)) <= set(range(-1, len(SCANNET_INSTANCE_IDS)))


def test_a_room_is_decided_once_and_the_kept_answer_is_the_fresh_one(monkeypatch):
    scene = _room(2, "s3dis")
    kept = {scene.name: _names(scene)[::2]}
    targets = ProtocolTargets(EvalRules(classes="s3dis"), kept)
    calls = []  # names looked up: deciding a room's instances looks up each instance's name
    monkeypatch.setattr(finetune, "instance_name", lambda *a: calls.append(1) or instance_name(*a))
    first = targets(scene)
    decided = len(calls)
    assert decided > 0
    second = targets(scene)
    assert len(calls) == decided
    # the same name with other labels (another copy of the room, a kept instance unlabelled there) is decided
    # again, not served the first's
    target = first.instance[first.instance >= 0][0]
    relabelled = Scene(name=scene.name, xyz=scene.xyz, rgb=scene.rgb, instance=scene.instance, meta=scene.meta,
                       semantic=np.where(scene.instance == target, -1, scene.semantic))
    again = targets(relabelled)
    assert len(calls) == 2 * decided
    for t, room in ((first, scene), (second, scene), (again, relabelled)):
        fresh = ProtocolTargets(EvalRules(classes="s3dis"), kept)(room)
        assert (t.instance == fresh.instance).all() and (t.ignore == fresh.ignore).all()
        assert (t.semantic == fresh.semantic).all()
    assert not (again.instance == first.instance).all()


def test_another_mask_selection_is_never_served_the_first_ones_targets():
    scene = _room(3, "s3dis")
    present = _names(scene)
    one = ProtocolTargets(EvalRules(classes="s3dis"), {scene.name: present[:5]})
    other = ProtocolTargets(EvalRules(classes="s3dis"), {scene.name: present[5:10]})
    a, b = one(scene), other(scene)
    assert not (a.ignore == b.ignore).all()
    for targets, kept in ((b, present[5:10]), (a, present[:5])):
        instance, ignore = _oracle(EvalRules(classes="s3dis"), frozenset(kept), scene)
        assert (targets.instance == instance).all() and (targets.ignore == ignore).all()
