"""Multicut backends against brute-force enumeration of all partitions; sign convention; σ monotonicity; RAMA's
long-lived worker process (with CPU stand-ins for rama_py)."""

from __future__ import annotations

import atexit
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from freepoint_bench.errors import ConfigError, DataError
from freepoint_bench.freepoint.multicut import (
    GaecKlSolver,
    GaecSolver,
    MulticutSolver,
    RamaSolver,
    canonical_edges,
    close_workers,
    get_solver,
    multicut_objective,
)
from freepoint_bench.geometry.labels import relabel_contiguous


def _partitions(n):
    """All set partitions of 0..n-1 as label arrays (restricted growth strings)."""

    def rec(prefix, m):
        if len(prefix) == n:
            yield np.array(prefix)
            return
        for label in range(m + 1):
            yield from rec(prefix + [label], max(m, label + 1))

    yield from rec([0], 1)


def _optimum(n, edges, costs):
    return min(multicut_objective(edges, costs, p) for p in _partitions(n))


def _random_graph(rng, n, p=0.6):
    edges = np.array([(i, j) for i in range(n) for j in range(i + 1, n) if rng.random() < p], dtype=np.int64)
    return edges.reshape(-1, 2), rng.normal(0, 1, len(edges))


def test_partition_enumerator_counts_bell_numbers():
    assert [sum(1 for _ in _partitions(n)) for n in range(1, 6)] == [1, 2, 5, 15, 52]


def test_sign_convention_three_nodes():
    edges = np.array([[0, 1], [1, 2], [0, 2]])
    for solver in (GaecSolver(), GaecKlSolver()):
        assert isinstance(solver, MulticutSolver)
        # Two strong attractions outweigh one repulsion: everything joined, objective 0.
        r = solver.solve(3, edges, np.array([5.0, 5.0, -1.0]))
        assert np.array_equal(r.labels, [0, 0, 0]) and r.objective == 0.0
        # 0-1 attract, both repel 2: {0, 1}, {2}; objective = cut costs = -10.
        r = solver.solve(3, edges, np.array([5.0, -5.0, -5.0]))
        assert np.array_equal(r.labels, [0, 0, 1]) and r.objective == -10.0
        # All repel: singletons.
        r = solver.solve(3, edges, np.array([-1.0, -1.0, -1.0]))
        assert len(set(r.labels.tolist())) == 3 and r.objective == -3.0


@pytest.mark.parametrize("seed", range(25))
def test_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 9))
    edges, costs = _random_graph(rng, n)
    best = _optimum(n, edges, costs)
    gaec = GaecSolver().solve(n, edges, costs)
    kl = GaecKlSolver().solve(n, edges, costs)
    for r in (gaec, kl):
        assert r.labels.dtype == np.int64 and r.labels.shape == (n,)
        assert set(r.labels.tolist()) == set(range(r.labels.max() + 1))  # contiguous from 0
        assert np.isclose(r.objective, multicut_objective(edges, costs, r.labels))
        assert r.objective >= best - 1e-9 and r.seconds >= 0
    assert kl.objective <= gaec.objective + 1e-9


def test_kl_usually_optimal():
    hits = 0
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        edges, costs = _random_graph(rng, 8)
        hits += np.isclose(GaecKlSolver().solve(8, edges, costs).objective, _optimum(8, edges, costs))
    assert hits >= 30


def test_segments_are_connected():
    rng = np.random.default_rng(5)
    n = 300
    edges = np.unique(np.sort(rng.integers(0, n, (600, 2)), axis=1), axis=0)
    edges = edges[edges[:, 0] != edges[:, 1]]
    costs = rng.normal(0.3, 1, len(edges))
    for solver in (GaecSolver(), GaecKlSolver()):
        labels = solver.solve(n, edges, costs).labels
        same = labels[edges[:, 0]] == labels[edges[:, 1]]
        g = coo_matrix((np.ones(same.sum()), (edges[same, 0], edges[same, 1])), shape=(n, n))
        _, comp = connected_components(g, directed=False)
        # Each segment is exactly one connected component of its within-segment edges.
        for seg in np.unique(labels):
            assert len(np.unique(comp[labels == seg])) == 1


def test_cut_edges_non_increasing_with_sigma_at_optimum():
    # Exchange argument: for σ1 < σ2 the optimum at σ2 cuts no more edges than at σ1.
    rng = np.random.default_rng(7)
    edges, costs = _random_graph(rng, 7, p=0.8)
    cuts = []
    for sigma in (-1.0, -0.3, 0.0, 0.4, 0.9, 1.5):
        parts = list(_partitions(7))
        objs = [multicut_objective(edges, costs + sigma, p) for p in parts]
        p = parts[int(np.argmin(objs))]
        cuts.append(int((p[edges[:, 0]] != p[edges[:, 1]]).sum()))
    assert cuts == sorted(cuts, reverse=True) and cuts[0] > cuts[-1]


def test_isolated_nodes_empty_graph_and_parallel_edges():
    r = GaecSolver().solve(4, np.zeros((0, 2), np.int64), np.zeros(0))
    assert np.array_equal(r.labels, [0, 1, 2, 3]) and r.objective == 0.0
    assert GaecSolver().solve(0, np.zeros((0, 2), np.int64), np.zeros(0)).labels.shape == (0,)
    uv, c = canonical_edges(3, np.array([[1, 0], [0, 1], [2, 2], [1, 2]]), np.array([1.0, 2.0, 9.0, -1.0]))
    assert np.array_equal(uv, [[0, 1], [1, 2]]) and np.allclose(c, [3.0, -1.0])
    with pytest.raises(DataError):
        canonical_edges(2, np.array([[0, 5]]), np.array([1.0]))
    with pytest.raises(DataError):
        canonical_edges(2, np.array([[0, 1]]), np.array([np.nan]))


def test_relabel_contiguous():
    assert np.array_equal(relabel_contiguous(np.array([7, -1, 3, 7, 9])), [0, -1, 1, 0, 2])


def test_get_solver():
    assert get_solver("gaec").name == "gaec" and get_solver("GAEC-KL").name == "gaec-kl"
    with pytest.raises(ConfigError):
        get_solver("metis")


@pytest.mark.skipif(not RamaSolver.available(), reason="rama_py (CUDA) is not importable here")
def test_rama_parity_with_gaec_kl():  # pragma: no cover - GPU only
    rng = np.random.default_rng(0)
    edges, costs = _random_graph(rng, 8)
    rama = RamaSolver().solve(8, edges, costs)
    assert rama.objective >= _optimum(8, edges, costs) - 1e-6
    assert np.isclose(rama.objective, GaecKlSolver().solve(8, edges, costs).objective, atol=1.0)


# ------------------------------------------------------------------ RAMA's worker, with stand-ins for rama_labels
# Each runs in the worker process (imported there by name) with rama_labels' signature.


def gaec_raw(i, j, c):
    """Returns GAEC's labels of nodes 0..max endpoint (RAMA's output shape)."""
    return GaecSolver().solve(int(max(i.max(), j.max())) + 1, np.stack([i, j], 1), c).labels


def segfault(i, j, c):
    os.kill(os.getpid(), signal.SIGSEGV)


def segfault_once(i, j, c):
    """Segfaults the first time (across processes: a flag file), then answers as gaec_raw."""
    flag = Path(os.environ["MULTICUT_TEST_FLAG"])
    if not flag.exists():
        flag.touch()
        os.kill(os.getpid(), signal.SIGSEGV)
    return gaec_raw(i, j, c)


def raises(i, j, c):
    raise ValueError("bad costs")


def sleeps(i, j, c):
    time.sleep(60)


def segfaults_at_exit(i, j, c):
    """Answers as gaec_raw and leaves an exit-time handler that segfaults, as rama_py's printers do."""
    atexit.register(os.kill, os.getpid(), signal.SIGSEGV)
    return gaec_raw(i, j, c)


def standin(name: str, **kw) -> RamaSolver:
    return RamaSolver(function=f"{__name__}:{name}", **kw)


@pytest.fixture
def workers():
    yield
    close_workers()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_one_worker_process_serves_every_solve_with_the_direct_results(workers):
    pids = set()
    for seed in range(4):
        rng = np.random.default_rng(seed)
        edges, costs = _random_graph(rng, 8)
        n = 10  # nodes 8 and 9 have no edge: RAMA labels only up to the largest endpoint
        got = standin("gaec_raw").solve(n, edges, costs)  # a new instance per solve, as get_solver gives
        want = GaecSolver().solve(n, edges, costs)
        assert np.array_equal(got.labels, want.labels) and got.objective == want.objective
        pids.add(standin("gaec_raw").worker.pid)
    assert len(pids) == 1 and None not in pids and os.getpid() not in pids


def test_a_worker_killed_between_solves_is_started_again(workers):
    edges, costs = _random_graph(np.random.default_rng(1), 8)
    solver = standin("gaec_raw")
    first = solver.solve(8, edges, costs)
    pid = solver.worker.pid
    os.kill(pid, signal.SIGKILL)
    while solver.worker.pid is not None:
        time.sleep(0.05)
    again = solver.solve(8, edges, costs)
    assert np.array_equal(again.labels, first.labels) and solver.worker.pid not in (None, pid)


def test_a_worker_that_dies_mid_solve_is_restarted_and_the_solve_retried(workers, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MULTICUT_TEST_FLAG", str(tmp_path / "crashed"))
    edges, costs = _random_graph(np.random.default_rng(2), 8)
    got = standin("segfault_once").solve(8, edges, costs)
    assert (tmp_path / "crashed").exists()  # the first worker did die
    assert np.array_equal(got.labels, GaecSolver().solve(8, edges, costs).labels)
    assert "died (exit code -11); starting another" in caplog.text


def test_a_worker_dying_on_every_try_raises_one_clear_error(workers):
    edges, costs = _random_graph(np.random.default_rng(3), 8)
    with pytest.raises(DataError, match=r"RAMA failed: the worker running .*:segfault died twice on one call "
                                        r"\(exit code -11\); .* use solver='gaec'"):
        standin("segfault").solve(8, edges, costs)


def test_a_raising_solver_keeps_its_worker_and_a_stuck_one_is_stopped(workers):
    edges, costs = _random_graph(np.random.default_rng(4), 8)
    solver = standin("raises")
    pids = []
    for _ in range(2):
        with pytest.raises(DataError, match="RAMA failed: .*:raises raised ValueError\\('bad costs'\\)"):
            solver.solve(8, edges, costs)
        pids.append(solver.worker.pid)
    assert pids[0] is not None and pids[0] == pids[1]
    stuck = standin("sleeps", timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(DataError, match="gave no answer in time"):
        stuck.solve(8, edges, costs)
    assert time.monotonic() - started < 10 and stuck.worker.pid is None


def test_closing_stops_the_worker_without_the_interpreter_teardown(workers):
    edges, costs = _random_graph(np.random.default_rng(5), 8)
    solver = standin("segfaults_at_exit")
    solver.solve(8, edges, costs)
    pid = solver.worker.pid
    assert solver.worker.close() == 0  # the exit-time handler never ran
    assert not _alive(pid) and solver.worker.pid is None
