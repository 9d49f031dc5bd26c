"""Surface normals by PCA over k nearest neighbours (vectorised numpy), consistently oriented.

Orientation: a PCA normal has no sign, but FreePoint's normal affinity is a cosine (§3.2, eq. 1), so the
sign matters. Every normal is flipped to point towards a viewpoint, by default the centroid of the cloud
(for an indoor room: the room's centre), like a camera in the middle of the room. Both faces of a thin
board then get the same sign, and a vertical surface does not flip sign from point to point as it would
with an "up" (+z) rule, where horizontal normals have z close to 0.
"""

from __future__ import annotations

import numpy as np

from freepoint_bench.geometry.neighbours import knn


def orient_normals(xyz: np.ndarray, normals: np.ndarray, viewpoint: np.ndarray | None = None) -> np.ndarray:
    """Returns normals (N, 3) flipped so that each points towards `viewpoint` (default: centroid of xyz)."""
    xyz = np.asarray(xyz, dtype=np.float64)
    normals = np.asarray(normals, dtype=np.float64)
    view = xyz.mean(axis=0) if viewpoint is None else np.asarray(viewpoint, dtype=np.float64)
    flip = np.einsum("ij,ij->i", normals, view - xyz) < 0
    out = normals.copy()
    out[flip] *= -1.0
    return out


def estimate_normals(
    xyz: np.ndarray, k: int = 16, viewpoint: np.ndarray | None = None, at: np.ndarray | None = None
) -> np.ndarray:
    """Returns unit normals (M, 3) float32: smallest-eigenvalue eigenvector of each point's kNN covariance.

    xyz: (N, 3) metres; the neighbourhood is the point and its k nearest others. at: optional (M,) indices
    of the points that need a normal (default all, M = N); neighbours still come from all of xyz.
    Oriented with `orient_normals`. Fewer than 3 points: every normal is +z (no plane is defined).
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    n = len(xyz)
    at = np.arange(n) if at is None else np.asarray(at, dtype=np.int64)
    if n < 3:
        return np.tile(np.array([0.0, 0.0, 1.0], dtype=np.float32), (len(at), 1))
    if len(at) == n:
        _, idx = knn(xyz, k)
        nbrs = np.concatenate([xyz[:, None, :], xyz[idx]], axis=1)  # (N, k+1, 3)
    else:
        _, idx = knn(xyz, k + 1, queries=xyz[at])  # the point itself is among its k + 1 nearest
        nbrs = xyz[idx]
    centred = nbrs - nbrs.mean(axis=1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", centred, centred)
    _, vecs = np.linalg.eigh(cov)  # ascending eigenvalues
    normals = vecs[:, :, 0]
    view = xyz.mean(axis=0) if viewpoint is None else viewpoint
    return orient_normals(xyz[at], normals, view).astype(np.float32)


def estimate_normals_open3d(xyz: np.ndarray, k: int = 16, viewpoint: np.ndarray | None = None) -> np.ndarray:
    """Returns unit normals (N, 3) float32 from open3d's kNN estimate_normals, oriented like ours.

    The reference implementation for the parity test; open3d's kNN includes the point itself, so k + 1
    neighbours are asked for to match `estimate_normals`.
    """
    from freepoint_bench.geometry.planes import import_open3d

    o3d = import_open3d()
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(xyz, dtype=np.float64)))
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=int(k) + 1))
    return orient_normals(xyz, np.asarray(cloud.normals), viewpoint).astype(np.float32)
