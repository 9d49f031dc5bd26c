"""Every registered pretext method's checkpoint loads into the fine-tuning model of every protocol, and trains under
every rung of the probe ladder (a frozen rung keeps the checkpoint's backbone bit for bit)."""

from __future__ import annotations

import pytest
import torch

from freepoint_bench.data.store import SceneStore
from freepoint_bench.data.synthetic import SyntheticConfig, generate_room
from freepoint_bench.engine.module import segmenter_from_preset
from freepoint_bench.harness.finetune import (
    ProtocolTargets,
    SemanticTargets,
    class_vocabulary,
    finetune_config,
    load_backbone,
    segmentation_vocabulary,
    train_fold,
)
from freepoint_bench.harness.protocol import (
    DEFAULT_TASK,
    FROZEN_TASKS,
    SEMANTIC_TASKS,
    TASKS,
    EvalRules,
    available_protocols,
    load_protocol,
)
from freepoint_bench.harness.run import RunOptions, cell_config
from freepoint_bench.pretext.base import applicable_overrides, available_methods, get_method

pytestmark = pytest.mark.slow

TINY_RUN = {"epochs1": 1, "epochs2": 1, "num_queries": 8, "max_points": None, "batch_size": 2}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = SceneStore(tmp_path_factory.mktemp("cache") / "synthetic-x")
    for i in range(2):
        store.save(generate_room(i, SyntheticConfig(num_points=1500), name=f"synth_{i:04d}"), split="train")
    return store


@pytest.mark.parametrize("method", ["freepoint", "pointcontrast", "csc", "depthcontrast", "supervised", "scratch"])
def test_checkpoint_loads_under_every_protocol(method, store, tmp_path):
    assert method in available_methods()
    impl = get_method(method)
    config = impl.default_config("cpu-small", **applicable_overrides(impl, TINY_RUN)[0])  # as run's --pretrain-set
    result = impl.pretrain(store, config, tmp_path / "run", names=store.names("train"),
                           checkpoints_dir=tmp_path / "ckpt")
    protocols = available_protocols()
    assert len(protocols) >= 8
    for name in protocols:
        spec = load_protocol(name)
        # the protocol's recipe at CPU scale (paper-preset protocols take --preset cpu-small here)
        ft = cell_config(spec, RunOptions(preset="cpu-small"))
        model = segmenter_from_preset(ft.train, num_classes=len(class_vocabulary(spec.eval)[0]))
        meta = load_backbone(model, result.backbone)
        assert meta["method"] == method
    # the probe ladder's rungs on this checkpoint: one epoch each on the two rooms (S3DIS's classes, as the
    # synthetic rooms carry them)
    rules = EvalRules(classes="s3dis")
    tiny = finetune_config("cpu-small", epochs=1, num_queries=8, batch_size=2, max_points=None)
    loaded = segmenter_from_preset(tiny.train)
    load_backbone(loaded, result.backbone)
    for task in (t for t in TASKS if t != DEFAULT_TASK):
        semantic = task in SEMANTIC_TASKS
        targets = SemanticTargets(rules) if semantic else ProtocolTargets(rules)
        vocabulary = segmentation_vocabulary(rules) if semantic else class_vocabulary(rules)
        trained, _ = train_fold(store, store.names("train"), targets, tiny, num_classes=len(vocabulary[0]),
                                init_backbone=result.backbone, seed=0, work_dir=tmp_path / task, task=task)
        after = trained.segmenter.backbone.state_dict()
        kept = [torch.equal(v, after[k]) for k, v in loaded.backbone.state_dict().items()]
        assert all(kept) if task in FROZEN_TASKS else not all(kept), task
