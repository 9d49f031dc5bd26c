"""How many processes and threads a run may use (the cores this process may run on, never more), and shards.

    cores = available_cores()              # CPU affinity (SLURM / taskset cpusets) and cgroup quota (containers)
    workers = process_workers(None, 40)    # default: one per core, at most one per task
    loader = loader_workers(4)             # DataLoader workers beside the training process
    mine = take_shard(cells, *parse_shard("1/4"))  # job arrays: every 4th cell from the second
    for out in map_unordered(work, items, workers=4, label=str):   # a spawn pool over items, results as they finish
        ...

Every process a pool starts limits its own thread pools to its share of the cores (`limit_threads`), so
`workers x threads` never exceeds the cores.
"""

from __future__ import annotations

import itertools
import logging
import math
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TypeVar

from freepoint_bench.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)

_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
_threads: int | None = None  # this process's thread budget once limit_threads ran (a pool worker)


def available_cores() -> int:
    """Returns the number of cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = _CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def thread_budget() -> int:
    """Returns how many threads this process may use (its share in a pool, else every available core)."""
    return _threads if _threads is not None else available_cores()


def process_workers(requested: int | None, tasks: int | None = None) -> int:
    """Returns the worker processes to start: `requested` (None: one per available core), at most one per task and
    at most the available cores (more would oversubscribe them; a warning says so)."""
    cores = available_cores()
    if requested is None:
        workers = cores
    else:
        workers = int(requested)
        if workers > cores:
            log.warning("%d workers asked for, %d cores available: using %d (more would only oversubscribe them)",
                        workers, cores, cores)
            workers = cores
    if tasks is not None:
        workers = min(workers, max(1, tasks))
    return max(1, workers)


def loader_workers(requested: int) -> int:
    """Returns the DataLoader worker processes to use: at most the available cores less the one training."""
    allowed = max(0, available_cores() - 1)
    if requested > allowed:
        log.info("DataLoader: %d workers asked for, %d cores beside training: using %d", requested, allowed, allowed)
    return min(int(requested), allowed)


def limit_threads(threads: int) -> None:
    """Limits this process's thread pools (OpenMP, BLAS, torch, and thread_budget for scipy's kNN) to `threads`.

    Run in each worker of a process pool (its initializer), with cores // workers."""
    global _threads
    _threads = max(1, int(threads))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(_threads)  # libraries loaded later read these
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(_threads)  # the ones already loaded
    except ImportError:  # pragma: no cover - scikit-learn depends on it
        pass
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(_threads)


def map_unordered(fn: Callable[[T], R], items: Iterable[T], workers: int | None = 1, *,
                  label: Callable[[T], str] = str, in_flight: int | None = None) -> Iterator[R]:
    """Yields fn(item) for every item, in the order they finish, computed by `workers` processes.

    workers: as process_workers (None: one per available core; never more than the cores, nor than the items when
    `items` has a length); 1 runs every item here, in order, with no pool. The pool starts its processes with spawn,
    not fork (a forked child inherits the parent's OpenMP / torch thread pools mid-state and can hang forever, seen
    in open3d's RANSAC), each limited to its share of the threads (limit_threads), and holds at most `in_flight`
    items at a time (default 2 x workers; `items` is read lazily). fn and the items must be picklable (fn at module
    level; functools.partial for fixed arguments). A failing item raises its own exception, with a note naming it
    (label(item)), after the items in flight finish; the ones not started are dropped. A worker that dies names the
    items it may have held.
    """
    workers = process_workers(workers, len(items) if isinstance(items, Sized) else None)
    if workers == 1:
        for item in items:
            try:
                result = fn(item)
            except Exception as exc:
                exc.add_note(f"while working on {label(item)}")
                raise
            yield result
        return
    limit = max(1, in_flight or 2 * workers)
    todo = iter(items)
    pending: dict[Future, T] = {}
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=limit_threads, initargs=(max(1, available_cores() // workers),))
    try:
        while True:
            for item in itertools.islice(todo, limit - len(pending)):
                pending[pool.submit(fn, item)] = item
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                item = pending.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool as exc:
                    held = ", ".join(label(i) for i in [item, *pending])
                    exc.add_note(f"a worker process died while the pool held {held}")
                    raise
                except Exception as exc:
                    exc.add_note(f"while working on {label(item)}")
                    raise
                yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _refuse_shard(written: str) -> ConfigError:
    return ConfigError(f"shard {written}: write it as i/n with 0 <= i < n (e.g. --shard 0/4)")


def _checked_shard(index: int, count: int) -> tuple[int, int]:
    if count < 1 or not 0 <= index < count:
        raise _refuse_shard(f"{index}/{count}")
    return index, count


def parse_shard(text: str) -> tuple[int, int]:
    """Returns (i, n) of a shard written ``i/n``: shard i of n, 0 <= i < n (ConfigError otherwise)."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise _refuse_shard(repr(text)) from None
    return _checked_shard(index, count)


def take_shard(items: Sequence[T], index: int, count: int) -> list[T]:
    """Returns shard `index` of `count`: every count-th item from index (shards are disjoint; together, all items)."""
    index, count = _checked_shard(index, count)
    return list(items[index::count])
