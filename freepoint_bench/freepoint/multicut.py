"""Minimum-cost multicut behind one small seam: GAEC and GAEC + Kernighan-Lin (bioimage-cpp, CPU), RAMA (GPU).

Sign convention, shared by every backend (and by RAMA and bioimage-cpp themselves): a **positive** edge cost
**attracts** (the solver prefers to join its endpoints), a negative cost repels. The objective of a labelling
is the standard minimisation objective

    objective(labels) = sum of costs c_e over cut edges e = (u, v), i.e. labels[u] != labels[v],

so lower is better; joining everything gives 0, and cutting an attractive edge raises it. Adding a constant
offset σ to every cost (FreePoint eq. 4) therefore makes cuts dearer: larger σ, fewer cut edges.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from freepoint_bench.errors import ConfigError, DataError
from freepoint_bench.geometry.labels import relabel_contiguous

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MulticutResult:
    """labels: (V,) int64 contiguous from 0; objective: sum of cut-edge costs (lower is better); seconds."""

    labels: np.ndarray
    objective: float
    seconds: float


@runtime_checkable
class MulticutSolver(Protocol):
    """A multicut backend; positive cost = attract, objective = sum of cut-edge costs (minimised)."""

    name: str

    def solve(self, num_nodes: int, edges: np.ndarray, costs: np.ndarray) -> MulticutResult:
        """Returns the labelling of `num_nodes` nodes for edges (E, 2) int64 with costs (E,) float64."""
        ...


def multicut_objective(edges: np.ndarray, costs: np.ndarray, labels: np.ndarray) -> float:
    """Returns the sum of costs (E,) over edges (E, 2) whose endpoints have different labels."""
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    labels = np.asarray(labels)
    cut = labels[edges[:, 0]] != labels[edges[:, 1]]
    return float(np.asarray(costs, dtype=np.float64)[cut].sum())


def canonical_edges(num_nodes: int, edges: np.ndarray, costs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns (edges (E', 2) int64 with u < v sorted unique, costs (E',) float64): self-loops dropped,
    parallel edges merged by summing their costs (which leaves every labelling's objective unchanged)."""
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    costs = np.asarray(costs, dtype=np.float64).reshape(-1)
    if len(edges) != len(costs):
        raise DataError(f"multicut: {len(edges)} edges but {len(costs)} costs; they must match")
    if len(edges) and (edges.min() < 0 or edges.max() >= num_nodes):
        raise DataError(f"multicut: edge endpoints must be in 0..{num_nodes - 1}")
    if not np.isfinite(costs).all():
        raise DataError("multicut: edge costs contain NaN/inf; check the affinities")
    u, v = np.minimum(edges[:, 0], edges[:, 1]), np.maximum(edges[:, 0], edges[:, 1])
    keep = u != v
    key = u[keep] * num_nodes + v[keep]
    uniq, inverse = np.unique(key, return_inverse=True)
    merged = np.bincount(inverse, weights=costs[keep], minlength=len(uniq))
    return np.stack([uniq // num_nodes, uniq % num_nodes], axis=1), merged


class _BioimageSolver:
    kernighan_lin = False

    def __init__(self, kl_outer_iterations: int = 100, seed: int = 42) -> None:
        self.kl_outer_iterations = kl_outer_iterations
        self.seed = seed

    def solve(self, num_nodes: int, edges: np.ndarray, costs: np.ndarray) -> MulticutResult:
        from bioimage_cpp.graph import UndirectedGraph
        from bioimage_cpp.graph.multicut import (
            GreedyAdditiveMulticut,
            KernighanLinMulticut,
            MulticutObjective,
        )

        start = time.perf_counter()
        uv, c = canonical_edges(num_nodes, edges, costs)
        if num_nodes == 0:
            return MulticutResult(np.zeros(0, np.int64), 0.0, time.perf_counter() - start)
        if len(uv) == 0:
            labels = np.arange(num_nodes, dtype=np.int64)
            return MulticutResult(labels, 0.0, time.perf_counter() - start)
        graph = UndirectedGraph.from_unique_edges(num_nodes, uv.astype(np.uint64))
        objective = MulticutObjective(graph, c)
        raw = GreedyAdditiveMulticut(seed=self.seed).optimize(objective)
        if self.kernighan_lin:
            objective.labels = raw  # warm start KL from GAEC
            kl = KernighanLinMulticut(number_of_outer_iterations=self.kl_outer_iterations)
            raw = kl.optimize(objective)
        labels = relabel_contiguous(np.asarray(raw, dtype=np.int64))
        seconds = time.perf_counter() - start
        return MulticutResult(labels, multicut_objective(uv, c, labels), seconds)


class GaecSolver(_BioimageSolver):
    """Greedy additive edge contraction (bioimage-cpp, CPU): fast, good objective."""

    name = "gaec"


class GaecKlSolver(_BioimageSolver):
    """GAEC followed by Kernighan-Lin moves (bioimage-cpp, CPU): objective never worse than GAEC's."""

    name = "gaec-kl"
    kernighan_lin = True


def _rama_worker(i: np.ndarray, j: np.ndarray, c: np.ndarray, queue) -> None:  # pragma: no cover - GPU
    try:
        import rama_py

        opts = rama_py.multicut_solver_options("PD")
        opts.verbose = False
        labels, _lower_bound, _ms, _timeline = rama_py.rama_cuda(i.tolist(), j.tolist(), c.tolist(), opts)
        queue.put(("ok", np.asarray(labels, dtype=np.int64)))
    except BaseException as exc:  # report any failure to the parent instead of hanging it
        queue.put(("error", repr(exc)))


class RamaSolver:
    """RAMA primal-dual multicut on a CUDA GPU (rama_py), run in a worker subprocess.

    rama_py can crash the interpreter at exit, so each solve happens in a fresh spawned process; the
    parent only sees the labels. Same sign convention: positive = attract.
    """

    name = "rama"

    def __init__(self, timeout_s: float = 600.0) -> None:
        self.timeout_s = timeout_s

    @staticmethod
    def available() -> bool:
        """Returns True when rama_py imports."""
        try:
            import rama_py  # noqa: F401
        except Exception:
            return False
        return True

    def solve(self, num_nodes: int, edges: np.ndarray, costs: np.ndarray) -> MulticutResult:
        start = time.perf_counter()
        uv, c = canonical_edges(num_nodes, edges, costs)
        if len(uv) == 0:
            return MulticutResult(np.arange(num_nodes, dtype=np.int64), 0.0, time.perf_counter() - start)
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        proc = ctx.Process(target=_rama_worker, args=(uv[:, 0], uv[:, 1], c, queue), daemon=True)
        proc.start()
        try:
            status, payload = queue.get(timeout=self.timeout_s)
        except Exception as exc:
            proc.kill()
            msg = f"RAMA gave no answer within {self.timeout_s}s ({exc}); use solver='gaec'"
            raise DataError(msg) from None
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
        if status != "ok":
            raise DataError(f"RAMA failed: {payload}; check the CUDA setup or use solver='gaec'")
        raw = payload
        full = np.arange(num_nodes, dtype=np.int64) + (raw.max() + 1 if len(raw) else 0)
        full[: len(raw)] = raw  # RAMA only labels nodes up to the largest edge endpoint
        labels = relabel_contiguous(full)
        return MulticutResult(labels, multicut_objective(uv, c, labels), time.perf_counter() - start)


_SOLVERS = {"gaec": GaecSolver, "gaec-kl": GaecKlSolver, "rama": RamaSolver}


def get_solver(name: str) -> MulticutSolver:
    """Returns the multicut backend called `name` ("gaec", "gaec-kl" or "rama")."""
    key = str(name).strip().lower()
    if key not in _SOLVERS:
        raise ConfigError(f"unknown multicut solver {name!r}; choose one of {sorted(_SOLVERS)}")
    if key == "rama" and not RamaSolver.available():
        raise ConfigError("solver 'rama' needs rama_py (CUDA) which does not import here; use 'gaec'")
    return _SOLVERS[key]()
