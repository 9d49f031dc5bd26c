"""The baselines' losses against brute-force references on tiny inputs, the ShapeContext partitions by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from baselines.losses import (
    KeyQueue,
    moco_info_nce,
    momentum_update,
    partitioned_info_nce,
    point_info_nce,
    shape_context_partitions,
    shape_context_partitions_fast,
)


def unit(rows: int, dim: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64),
                       dim=1)


def brute_nce(q, k, t, negatives_of):
    """-log(exp(q_i k_i / t) / sum over {i} ∪ negatives_of(i) of exp(q_i k_j / t)), averaged over anchors i."""
    total = 0.0
    for i in range(len(q)):
        pos = math.exp(float(q[i] @ k[i]) / t)
        den = pos + sum(math.exp(float(q[i] @ k[j]) / t) for j in negatives_of(i) if j != i)
        total += -math.log(pos / den)
    return total / len(q)


def test_point_info_nce_matches_brute_force():
    q, k = unit(6, 4, 0), unit(6, 4, 1)
    expected = brute_nce(q, k, 0.4, lambda i: range(6))
    assert float(point_info_nce(q, k, 0.4)) == pytest.approx(expected, rel=1e-10)


def test_point_info_nce_is_low_for_aligned_features_and_high_for_swapped():
    q = unit(8, 16, 2)
    assert float(point_info_nce(q, q, 0.07)) < 0.01
    assert float(point_info_nce(q, q.roll(1, 0), 0.07)) > 5


def test_excluded_negatives_leave_the_softmax():
    q, k = unit(5, 3, 3), unit(5, 3, 4)
    exclude = torch.zeros(5, 5, dtype=torch.bool)
    exclude[0, 1:3] = True
    exclude[4, :] = True  # the diagonal stays: anchor 4 keeps only its positive (loss 0)
    keep = {i: [j for j in range(5) if not exclude[i, j]] for i in range(5)}
    expected = brute_nce(q, k, 0.4, lambda i: keep[i])
    assert float(point_info_nce(q, k, 0.4, exclude=exclude)) == pytest.approx(expected, rel=1e-10)


def test_shape_context_partitions_by_hand():
    xyz = torch.tensor([[0, 0, 0], [3, 0, 0], [0, 5, 0], [-4, -1, 0], [0, 0, 25], [1, 0, 0], [0, 3, -3], [0, -3, 3]],
                       dtype=torch.float64)
    parts = shape_context_partitions(xyz, r1=2.0, r2=20.0, nbins_xy=2, nbins_zy=2)
    # around the anchor at the origin: d = point - anchor; partition = radial * 4 + bin_xy * 2 + bin_zy
    #   self: closer than r1 -> -1;  (3,0,0): inner, xy angle 0 -> 0, zy angle atan2(0, 0) = 0 -> 0: 0
    #   (0,5,0): xy π/2 -> 0, zy atan2(5, 0) = π/2 -> 1: 1;  (-4,-1,0): xy 3.39 -> 1, zy -π/2 mod π = π/2 -> 1: 3
    #   (0,0,25): outer (>= r2), xy 0, zy 0: 4;  (1,0,0): |d| = 1 < r1: -1
    #   (0,3,-3): xy π/2 -> 0, zy atan2(3, -3) = 3π/4 -> 1: 1;  (0,-3,3): xy 3π/2 -> 1, zy -π/4 mod π -> 1: 3
    assert parts[0].tolist() == [-1, 0, 1, 3, 4, -1, 1, 3]
    # around (3,0,0): the origin is at d = (-3,0,0): xy π -> 1, zy atan2(0, 0) = 0 -> 0, inner: 2
    assert int(parts[1, 0]) == 2
    assert int(parts[4, 0]) == 4  # (0,0,-25) from (0,0,25): outer, xy 0, zy atan2(0, -25) = π mod π = 0
    assert parts.diagonal().tolist() == [-1] * 8


def test_shape_context_partitions_match_a_per_pair_reference():
    xyz = torch.rand(30, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 40
    parts = shape_context_partitions(xyz, 2.0, 20.0, 2, 2)
    for i in range(30):
        for j in range(30):
            dx, dy, dz = (xyz[j] - xyz[i]).tolist()
            dist = math.sqrt(dx * dx + dy * dy + dz * dz)
            if dist < 2.0:
                want = -1
            else:
                bin_xy = int((math.atan2(dy, dx) % (2 * math.pi)) // math.pi)
                bin_zy = int((math.atan2(dy, dz) % math.pi) // (math.pi / 2))
                want = (0 if dist < 20.0 else 1) * 4 + bin_xy * 2 + bin_zy
            assert int(parts[i, j]) == want, (i, j)


def test_fast_partitions_by_hand():
    xyz = torch.tensor([[0, 0, 0], [0, 0, 5], [0, 0, -5], [0, 0, 30], [0, 0, -30], [5, 0, 0], [1, 0, 1]],
                       dtype=torch.float64)
    parts = shape_context_partitions_fast(xyz, r1=2.0, r2=20.0)
    # inner above / below: 0 / 1, outer above / below: 2 / 3, level with the anchor or within r1: none
    assert parts[0].tolist() == [-1, 0, 1, 2, 3, -1, -1]
    assert int(parts[1, 0]) == 1 and int(parts[3, 0]) == 3 and int(parts[4, 3]) == 2


@pytest.mark.parametrize("fast", [False, True])
def test_partitioned_info_nce_matches_brute_force(fast):
    n = 12
    xyz = torch.rand(n, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 30
    q, k = unit(n, 5, 5), unit(n, 5, 6)
    parts = shape_context_partitions_fast(xyz) if fast else shape_context_partitions(xyz)
    count = 4 if fast else 8
    expected = sum(brute_nce(q, k, 0.4, lambda i, p=p: [j for j in range(n) if int(parts[i, j]) == p])
                   for p in range(count)) / count
    got = float(partitioned_info_nce(q, k, parts, count, 0.4))
    assert got == pytest.approx(expected, rel=1e-10)
    masked = sum(float(point_info_nce(q, k, 0.4, exclude=parts != p)) for p in range(count)) / count
    assert got == pytest.approx(masked, rel=1e-10)  # the one-pass form equals CSC's one mask per partition
    assert got != pytest.approx(float(point_info_nce(q, k, 0.4)))  # the masking changes the loss


def test_queue_enqueues_and_wraps_around():
    queue = KeyQueue(size=5, dim=2, seed=0)
    initial = queue.keys.clone()
    # reference: a list written one key at a time at a pointer that wraps around
    reference, ptr = [row.clone() for row in initial], 0
    batches = [torch.arange(6.0).reshape(3, 2), torch.arange(10.0, 18.0).reshape(4, 2),
               torch.arange(30.0, 44.0).reshape(7, 2)]  # the last one is longer than the queue
    for keys, want_ptr in zip(batches, [3, 2, 4], strict=True):
        queue.enqueue(keys)
        for key in keys:
            reference[ptr], ptr = key, (ptr + 1) % 5
        assert int(queue.ptr) == ptr == want_ptr
        torch.testing.assert_close(queue.keys, torch.stack(reference))
    # by hand: the second batch wrote rows 3, 4, 0, 1; the first batch's last key is in row 2 until the third
    queue2 = KeyQueue(size=5, dim=2, seed=0)
    queue2.enqueue(batches[0])
    torch.testing.assert_close(queue2.keys[3:], initial[3:])
    queue2.enqueue(batches[1])
    torch.testing.assert_close(queue2.keys[[3, 4, 0, 1]], batches[1])
    torch.testing.assert_close(queue2.keys[2], batches[0][2])
    # the long batch leaves exactly its last five keys
    assert sorted(map(tuple, queue.keys.tolist())) == sorted(map(tuple, batches[2][-5:].tolist()))


def test_momentum_step():
    torch.manual_seed(0)
    query, key = nn.Linear(3, 2), nn.Linear(3, 2)
    before_q = [p.detach().clone() for p in query.parameters()]
    before_k = [p.detach().clone() for p in key.parameters()]
    momentum_update(key, query, 0.9)
    for pk, bk, bq in zip(key.parameters(), before_k, before_q, strict=True):
        torch.testing.assert_close(pk.detach(), 0.9 * bk + 0.1 * bq)
    for pq, bq in zip(query.parameters(), before_q, strict=True):
        torch.testing.assert_close(pq.detach(), bq)
    momentum_update(key, query, 0.0)  # momentum 0 copies the query encoder
    for pk, pq in zip(key.parameters(), query.parameters(), strict=True):
        torch.testing.assert_close(pk, pq)


def test_moco_info_nce_matches_brute_force():
    q, k, queue = unit(3, 4, 7), unit(3, 4, 8), unit(6, 4, 9)
    t = 0.1
    expected = 0.0
    for b in range(3):
        pos = math.exp(float(q[b] @ k[b]) / t)
        den = pos + sum(math.exp(float(q[b] @ queue[j]) / t) for j in range(6))
        expected += -math.log(pos / den) / 3
    assert float(moco_info_nce(q, k, queue, t)) == pytest.approx(expected, rel=1e-10)
