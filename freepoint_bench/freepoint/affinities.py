"""Edge affinities of FreePoint §3.2 (eq. 1-4): per-edge similarities, z-normalised, weighted, offset by σ.

Sign convention: an affinity is large for similar endpoints; the multicut cost of an edge is
`combined affinity + σ`, and a positive cost attracts (see `freepoint.multicut`). So a larger σ gives
fewer, larger segments: σ_low = 0.9 → over-segmented base masks, σ_high = 1.2 → under-segmented masks.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from freepoint_bench.errors import ConfigError
from freepoint_bench.freepoint.features import PointFeatures

AFFINITY_NAMES = ("emb", "norm", "xyz", "rgb")  # eq. 3 order: α1..α4


def cosine_similarity(a: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Returns the row-wise cosine similarity (E,) of a, b (E, D); rows of zero length give 0."""
    num = np.einsum("ij,ij->i", a, b)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(den > eps, num / np.maximum(den, eps), 0.0)


def raw_affinities(edges: np.ndarray, feats: PointFeatures, normal_affinity: str = "cos") -> dict[str, np.ndarray]:
    """Returns the un-normalised affinities (E,) float64 per edge (E, 2) of eq. 1-2, by name.

    emb: Cos(F_i, F_j) (only with deep features); norm: Cos(N_i, N_j), or |Cos(N_i, N_j)| with
    normal_affinity "abs" (blind to the normals' signs); xyz: -||V_i - V_j||_2 (metres);
    rgb: -||C_i - C_j||_2 (colours 0..1; only with colours).
    """
    if normal_affinity not in ("cos", "abs"):
        raise ConfigError(f"unknown normal affinity {normal_affinity!r}; use cos or abs")
    u, v = edges[:, 0], edges[:, 1]
    out: dict[str, np.ndarray] = {}
    if feats.deep is not None:
        out["emb"] = cosine_similarity(feats.deep[u].astype(np.float64), feats.deep[v].astype(np.float64))
    out["norm"] = cosine_similarity(feats.normals[u], feats.normals[v])
    if normal_affinity == "abs":
        out["norm"] = np.abs(out["norm"])
    out["xyz"] = -np.linalg.norm(feats.xyz[u] - feats.xyz[v], axis=1)
    if feats.rgb is not None:
        out["rgb"] = -np.linalg.norm(feats.rgb[u] - feats.rgb[v], axis=1)
    return out


def z_normalise(values: np.ndarray) -> np.ndarray:
    """Returns (values - mean) / std over all edges (mean 0, variance 1); a constant input gives zeros."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values.copy()
    centred = values - values.mean()
    std = centred.std()
    if not np.isfinite(std) or std <= 1e-12 * max(1.0, float(np.abs(values).max())):
        return np.zeros_like(centred)
    return centred / std


def combine_affinities(raw: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Returns A = sum_k weights[k] * z_normalise(raw[k]) (eq. 3) over the affinities present in `raw`."""
    unknown = set(raw) - set(AFFINITY_NAMES)
    if unknown:
        raise ConfigError(f"unknown affinities {sorted(unknown)}; known: {AFFINITY_NAMES}")
    used = [k for k in AFFINITY_NAMES if k in raw and weights.get(k, 0.0) > 0]
    if not used:
        raise ConfigError(
            f"no affinity has a positive weight among those available ({sorted(raw)}); "
            "raise one of alpha_norm, alpha_xyz, alpha_rgb (or alpha_emb with deep features)"
        )
    n = len(next(iter(raw.values())))
    total = np.zeros(n, dtype=np.float64)
    for key in used:
        total += float(weights[key]) * z_normalise(raw[key])
    return total


def multicut_costs(affinity: np.ndarray, sigma: float) -> np.ndarray:
    """Returns the multicut edge costs A + σ (eq. 4); positive attracts, so larger σ merges more."""
    return np.asarray(affinity, dtype=np.float64) + float(sigma)
