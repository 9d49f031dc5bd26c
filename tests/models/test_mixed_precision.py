"""The losses under CUDA autocast's cast rules (emulated on CPU, tests/cuda_autocast.py) at S3DIS crop size.

A 16-mixed or bf16-mixed run on a GPU casts the decoder's products to half and exp / log / BCE to float32;
the criterion must then compute in float32 (as Mask3D's does): at 200k loss points the matching products
overflow float16, and the soft-box log-sum-exp mixed half and float32 in one index_add.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cuda_autocast import cuda_autocast

from freepoint_bench.models.criterion import SetCriterion, targets_from_instance_ids
from freepoint_bench.models.decoder import Prediction
from freepoint_bench.models.losses import LossConfig, box_loss
from freepoint_bench.models.segmenter import TINY, InstanceSegmenter, SegmenterOutput
from freepoint_bench.models.voxels import SparseBatch, collate

POINTS, VOXELS, QUERIES, DIM = 200_000, 20_000, 20, 16  # an S3DIS crop's loss points; 20 queries
PRETRAIN, FINETUNE = LossConfig(), LossConfig(mean=0, box=0)  # FreePoint's weak terms on / S3DIS fine-tuning
CLASSES = 13


def _room(seed: int = 0):
    """Returns (SparseBatch of one 10 x 8 x 3 m room of POINTS points over VOXELS voxels, its targets): eight
    boxes of points, labelled with classes, on a floor that no target covers."""
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(POINTS, 3, generator=g) * torch.tensor([10.0, 8.0, 3.0])
    instance = torch.full((POINTS,), -1)
    for i in range(8):
        lo = torch.rand(3, generator=g) * torch.tensor([8.0, 6.0, 1.5])
        inside = ((xyz >= lo) & (xyz <= lo + torch.tensor([2.0, 2.0, 1.5]))).all(1)
        instance[inside & (instance < 0)] = i
    semantic = instance.clamp(min=0) % CLASSES
    point_to_voxel = torch.randint(VOXELS, (POINTS,), generator=g)
    coords = torch.zeros(VOXELS, 4, dtype=torch.int32)
    batch = SparseBatch(coords, torch.zeros(VOXELS, 3), [point_to_voxel], [xyz])
    return batch, [targets_from_instance_ids(instance, semantic)]


def _parameters(seed: int = 1) -> dict[str, torch.Tensor]:
    """Returns the leaf tensors the predictions are products of (the decoder's last layer, in small)."""
    g = torch.Generator().manual_seed(seed)
    return {
        "queries": (torch.randn(2, QUERIES, DIM, generator=g) / 2).requires_grad_(),
        "voxels": torch.randn(VOXELS, DIM, generator=g).requires_grad_(),
        "objectness": torch.randn(DIM, 1, generator=g).requires_grad_(),
        "classes": torch.randn(DIM, CLASSES + 1, generator=g).requires_grad_(),
    }


def _outputs(params: dict[str, torch.Tensor], config: LossConfig) -> SegmenterOutput:
    """Returns an auxiliary and a final prediction, each made by products (so half under autocast). Fine-tuning
    starts with logits about 0 (a new decoder: the float16 overflow of the matching products); pretraining's
    masks cover a few percent of the points, as a trained decoder's do (which keeps the soft box cheap)."""
    classes, bias = config is FINETUNE, 0.0 if config is FINETUNE else -4.0
    steps = []
    for q in params["queries"]:
        masks = q @ params["voxels"].T + bias  # (Q, VOXELS) mask logits over the voxels
        objectness = (q @ params["objectness"])[:, 0]
        class_logits = (q @ params["classes"])[None] if classes else None
        steps.append(Prediction([masks], objectness[None], class_logits))
    return SegmenterOutput(final=steps[-1], aux=steps[:-1], query_xyz=[])


def _float(outputs: SegmenterOutput) -> SegmenterOutput:
    """Returns the outputs cast to float32 (detached)."""
    def up(p: Prediction) -> Prediction:
        cls = None if p.class_logits is None else p.class_logits.detach().float()
        return Prediction([m.detach().float() for m in p.masks], p.objectness.detach().float(), cls)
    return SegmenterOutput(final=up(outputs.final), aux=[up(p) for p in outputs.aux], query_xyz=[])


@pytest.fixture(scope="module")
def room():
    return _room()


@pytest.mark.parametrize(
    "config", [pytest.param(PRETRAIN, marks=pytest.mark.slow, id="pretrain"), pytest.param(FINETUNE, id="finetune")]
)  # pretrain: ~10 s each on 2 busy cores
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_criterion_at_200k_points_is_finite_float32_and_close_to_fp32(room, config, dtype):
    batch, targets = room
    criterion = SetCriterion(config, num_classes=CLASSES if config is FINETUNE else 0)
    runs = {}
    for name in ("fp32", "mixed"):
        params = _parameters()
        if name == "fp32":
            outputs = _outputs(params, config)
            terms = criterion(outputs, targets, batch)
        else:
            with cuda_autocast(dtype):
                outputs = _outputs(params, config)
                assert outputs.final.masks[0].dtype == dtype  # the emulation is on
                terms = criterion(outputs, targets, batch)
        terms["loss"].backward()
        runs[name] = outputs, terms, {k: v.grad for k, v in params.items() if v.grad is not None}
    (_, full, full_grads), (outputs, mixed, mixed_grads) = runs["fp32"], runs["mixed"]
    # computed in float32 from the half predictions: the float32 criterion's numbers on those predictions
    same = criterion(_float(outputs), targets, batch)
    for name, value in same.items():
        assert mixed[name].dtype == torch.float32, name
        torch.testing.assert_close(mixed[name], value, rtol=1e-6, atol=1e-6, msg=name)
    # and close to float32 throughout: the half logits differ by their rounding only (2^-11 or 2^-8 relative)
    tol = 1e-2 if dtype == torch.float16 else 3e-2
    for name, value in full.items():
        torch.testing.assert_close(mixed[name], value, rtol=tol, atol=tol * 1e-1, msg=name)
    assert full_grads.keys() == mixed_grads.keys()
    for name, grad in full_grads.items():
        assert torch.isfinite(mixed_grads[name]).all(), name
        cosine = torch.nn.functional.cosine_similarity(mixed_grads[name].flatten(), grad.flatten(), dim=0)
        assert cosine > 0.99, (name, float(cosine))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_box_loss_takes_half_logits_under_cuda_autocast(dtype):
    """Defect 3 at its source: the segmented log-sum-exp's sums take exp's float32 under CUDA autocast."""
    g = torch.Generator().manual_seed(4)
    xyz = torch.rand(500, 3, generator=g)
    target = torch.rand(3, 500, generator=g) < 0.2
    a, b = torch.randn(3, 8, generator=g), torch.randn(500, 8, generator=g)
    reference = box_loss((a @ b.T).to(dtype).float(), target, xyz, 0.02)
    with cuda_autocast(dtype):
        logits = a @ b.T
        assert logits.dtype == dtype
        loss = box_loss(logits, target, xyz, 0.02)
    torch.testing.assert_close(loss.float(), reference, rtol=1e-2, atol=1e-3)


def _scene(n: int = 1200, seed: int = 5):
    rng = np.random.default_rng(seed)
    xyz = rng.uniform([0, 0, 0], [4, 3, 0.05], (n, 3))
    inst = np.full(n, -1)
    for i in range(4):
        lo = rng.uniform([0, 0, 0], [3, 2, 0])
        box = rng.uniform(lo, lo + [1.0, 1.0, 1.0], (n // 8, 3))
        xyz = np.concatenate([xyz, box])
        inst = np.concatenate([inst, np.full(len(box), i)])
    xyz = xyz.astype(np.float32)
    return xyz, rng.uniform(0, 1, xyz.shape).astype(np.float32), inst


@pytest.mark.slow  # ~10 s each: the segmenter in half precision on a CPU
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_freepoint_pretraining_step_runs_under_cuda_autocast(dtype):
    """A whole step of FreePoint's pretraining loss (Lmean and Lbox on): segmenter, criterion, AdamW."""
    xyz, rgb, inst = _scene()
    batch = collate([xyz], [rgb], voxel_size=0.1)
    targets = [targets_from_instance_ids(torch.from_numpy(inst))]
    torch.manual_seed(0)
    model = InstanceSegmenter(TINY)
    before = [p.detach().clone() for p in model.parameters()]
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with cuda_autocast(dtype):
        outputs = model(batch)
        assert outputs.final.masks[0].dtype == dtype
        terms = SetCriterion(PRETRAIN)(outputs, targets, batch)
    terms["loss"].backward()
    optimiser.step()
    assert all(torch.isfinite(v) for v in terms.values()) and terms["box"] > 0 and terms["mean"] > 0
    after = list(model.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))
