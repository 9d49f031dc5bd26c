"""Minimum-cost multicut behind one small seam: GAEC and GAEC + Kernighan-Lin (bioimage-cpp, CPU), RAMA (GPU).

Sign convention, shared by every backend (and by RAMA and bioimage-cpp themselves): a **positive** edge cost
**attracts** (the solver prefers to join its endpoints), a negative cost repels. The objective of a labelling
is the standard minimisation objective

    objective(labels) = sum of costs c_e over cut edges e = (u, v), i.e. labels[u] != labels[v],

so lower is better; joining everything gives 0, and cutting an attractive edge raises it. Adding a constant
offset σ to every cost (FreePoint eq. 4) therefore makes cuts dearer: larger σ, fewer cut edges.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import multiprocessing as mp
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

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


RAMA_FUNCTION = "freepoint_bench.freepoint.multicut:rama_labels"  # what RamaSolver's worker runs


def rama_labels(i: np.ndarray, j: np.ndarray, c: np.ndarray) -> np.ndarray:  # pragma: no cover - GPU
    """Returns RAMA's raw (int64) labels of the nodes 0..max endpoint for edges (i, j) with costs c (rama_py, CUDA
    primal-dual)."""
    import rama_py

    opts = rama_py.multicut_solver_options("PD")
    opts.verbose = False
    labels, _lower_bound, _ms, _timeline = rama_py.rama_cuda(i.tolist(), j.tolist(), c.tolist(), opts)
    return np.asarray(labels, dtype=np.int64)


class WorkerError(RuntimeError):
    """A SolveWorker's function raised, its process died twice on one call, or it gave no answer in time."""


def _serve(function: str, conn: Any) -> None:  # pragma: no cover - runs in the worker process
    """Answers each request (an argument tuple) on `conn` with ("ok", function(*args)) or ("error", repr) until
    None or the parent's end closes; then leaves without the interpreter's teardown."""
    fn = None
    while True:
        try:
            args = conn.recv()
        except (EOFError, OSError):
            break  # the parent is gone
        if args is None:
            break
        try:
            if fn is None:
                module, _, name = function.partition(":")
                fn = getattr(importlib.import_module(module), name)
            reply = ("ok", fn(*args))
        except BaseException as exc:  # reported to the parent instead of killing the worker
            reply = ("error", repr(exc))
        try:
            conn.send(reply)
        except (EOFError, OSError):
            break
        except Exception as exc:  # an answer that does not pickle
            conn.send(("error", f"unpicklable result: {exc!r}"))
    conn.close()
    # os._exit skips atexit handlers and C++ static destructors: RAMA's exit-time printers segfault there
    os._exit(0)


class SolveWorker:
    """One long-lived spawned process that calls `function` ("module:name", importable there) on each request.

    Started at the first call and reused by the next ones (a fresh interpreter per solve cost a CUDA context and
    seconds of imports each time); a worker that died between calls is started again, one that dies during a
    call is started again and the call retried once; one that gives no answer within the timeout is killed.
    close() (also at exit) stops it. Calls are serialised by a lock.
    """

    def __init__(self, function: str) -> None:
        self.function = function
        self._proc: Any = None
        self._conn: Any = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """Returns the worker process's pid while it runs, else None."""
        return self._proc.pid if self._proc is not None and self._proc.is_alive() else None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")  # never fork: a forked child shares the parent's CUDA and thread state
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(self.function, child), daemon=True, name=f"solve {self.function}")
        proc.start()
        child.close()  # only the worker holds its end now: its death reads as EOF here
        self._proc, self._conn = proc, parent

    def close(self) -> int | None:
        """Returns the exit code of the worker after stopping it (a polite request, then kill after 5 s; None when
        none ran); the next call starts a new one."""
        proc, conn, self._proc, self._conn = self._proc, self._conn, None, None
        if proc is None:
            return None
        try:
            conn.send(None)
        except (OSError, ValueError):
            pass
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)
        conn.close()
        return proc.exitcode

    def _answer(self, deadline: float) -> tuple[str, Any] | None:
        """Returns the worker's reply, None when it died first; WorkerError (worker killed) past the deadline."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._proc.kill()
                self.close()
                raise WorkerError(f"{self.function} gave no answer in time; its worker was stopped")
            try:
                if self._conn.poll(min(remaining, 0.5)):
                    return self._conn.recv()
            except (EOFError, OSError):
                return None
            if not self._proc.is_alive() and not self._conn.poll():
                return None

    def call(self, *args: Any, timeout_s: float = 600.0) -> Any:
        """Returns function(*args) computed in the worker; WorkerError when it raised (its repr), when the
        worker died on this call twice, or after timeout_s seconds without an answer."""
        with self._lock:
            deaths = 0
            while True:
                if self._proc is None or not self._proc.is_alive():
                    self.close()
                    self._start()
                try:
                    self._conn.send(args)
                    reply = self._answer(time.monotonic() + timeout_s)
                except (BrokenPipeError, EOFError, ConnectionResetError):
                    reply = None
                if reply is not None:
                    status, payload = reply
                    if status != "ok":
                        raise WorkerError(f"{self.function} raised {payload}")
                    return payload
                deaths += 1
                code = self.close()
                if deaths == 2:
                    raise WorkerError(f"the worker running {self.function} died twice on one call "
                                      f"(exit code {code})")
                logger.warning("the worker running %s died (exit code %s); starting another and retrying",
                               self.function, code)


_WORKERS: dict[str, SolveWorker] = {}
_WORKERS_LOCK = threading.Lock()


def solve_worker(function: str) -> SolveWorker:
    """Returns this process's SolveWorker of `function` (one per function, shared by every solver instance)."""
    with _WORKERS_LOCK:
        if function not in _WORKERS:
            _WORKERS[function] = SolveWorker(function)
        return _WORKERS[function]


@atexit.register
def close_workers() -> None:
    """Stops every SolveWorker of this process."""
    with _WORKERS_LOCK:
        workers = list(_WORKERS.values())
    for worker in workers:
        worker.close()


def _forget_workers_in_child() -> None:
    # a forked child must not talk to its parent's workers through the inherited pipes
    global _WORKERS_LOCK
    _WORKERS.clear()
    _WORKERS_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_workers_in_child)


class RamaSolver:
    """RAMA primal-dual multicut on a CUDA GPU (rama_py), run in a long-lived worker process (SolveWorker).

    rama_py crashes the interpreter at exit, so it runs in a worker process that leaves without the teardown;
    the parent only sees the labels. `function` names what the worker runs (tests point it at a CPU solver with
    rama_labels' signature). Same sign convention: positive = attract.
    """

    name = "rama"

    def __init__(self, timeout_s: float = 600.0, function: str = RAMA_FUNCTION) -> None:
        self.timeout_s = timeout_s
        self.function = function

    @staticmethod
    def available() -> bool:
        """Returns True when rama_py imports."""
        try:
            import rama_py  # noqa: F401
        except Exception:
            return False
        return True

    @property
    def worker(self) -> SolveWorker:
        """Returns the worker process that runs this solver's function."""
        return solve_worker(self.function)

    def solve(self, num_nodes: int, edges: np.ndarray, costs: np.ndarray) -> MulticutResult:
        start = time.perf_counter()
        uv, c = canonical_edges(num_nodes, edges, costs)
        if len(uv) == 0:
            return MulticutResult(np.arange(num_nodes, dtype=np.int64), 0.0, time.perf_counter() - start)
        try:
            raw = np.asarray(self.worker.call(uv[:, 0], uv[:, 1], c, timeout_s=self.timeout_s), dtype=np.int64)
        except WorkerError as exc:
            raise DataError(f"RAMA failed: {exc}; check the CUDA setup or use solver='gaec'") from None
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
