"""Fixtures and tools of the fault-injection suite: tiny synthetic S3DIS rooms, corrupters, bench.py subprocesses
that are killed with SIGKILL at seeded moments.

Every command here runs on 6 rooms of 1500 points (one per area; Area 5 is evaluated), one or two epochs and 8
queries, so a whole bench.py process lasts seconds (most of it importing torch).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench.py"
PROTOCOLS = ("synthetic-s3dis-50pct-scenes", "synthetic-s3dis-20pct-masks")
ROOMS, POINTS = 6, 1500
# fine-tuning and pretraining as small as they go: whole rooms, 8 queries
FT = ["--set", "num_queries=8", "--set", "max_points=none"]
PT = ["--set", "num_queries=8", "--set", "max_points=none"]
PT_RUN = ["--pretrain-set", "num_queries=8", "--pretrain-set", "max_points=none"]


@pytest.fixture(scope="session")
def s3dis_root(tmp_path_factory) -> Path:
    """Returns a folder of 6 synthetic rooms (1500 points) in S3DIS's raw layout, one per area."""
    from freepoint_bench.data.synthetic import SyntheticConfig, write_synthetic_s3dis

    root = tmp_path_factory.mktemp("s3dis")
    write_synthetic_s3dis(root, ROOMS, seed=1, config=SyntheticConfig(num_points=POINTS))
    return root


@pytest.fixture(scope="session")
def prepared(s3dis_root, tmp_path_factory):
    """Returns (cache folder, store, names) of the rooms prepared once into a session scene cache."""
    from freepoint_bench.data.open import open_dataset

    cache = tmp_path_factory.mktemp("cache")
    store, names = open_dataset("s3dis", s3dis_root, cache)
    return cache, store, names


def private_protocols(folder: Path) -> Path:
    """Returns a protocols folder holding copies of the synthetic protocols (freezing writes split files there)."""
    from freepoint_bench.harness.protocol import PROTOCOLS_DIR

    (folder / "splits").mkdir(parents=True, exist_ok=True)
    for name in PROTOCOLS:
        shutil.copy(PROTOCOLS_DIR / f"{name}.toml", folder)
    return folder


@pytest.fixture()
def workspace(tmp_path, s3dis_root, prepared) -> dict[str, Path]:
    """Output folders and a private protocols folder in tmp_path; the scene cache is a copy of the session's."""
    cache = tmp_path / "cache"
    shutil.copytree(prepared[0], cache)
    return {"root": s3dis_root, "protocols": private_protocols(tmp_path / "protocols"), "cache": cache,
            "results": tmp_path / "results", "checkpoints": tmp_path / "ckpt", "runs": tmp_path / "runs",
            "tmp": tmp_path}


def where(ws: dict[str, Path]) -> list[str]:
    """Returns the bench.py run / finetune options pointing at a workspace."""
    return ["--root", str(ws["root"]), "--protocols-dir", str(ws["protocols"]), "--results", str(ws["results"]),
            "--checkpoints", str(ws["checkpoints"]), "--runs", str(ws["runs"]), "--cache", str(ws["cache"])]


# ---------------------------------------------------------------------------------------------- corruption


def corruptions(data: bytes, count: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """Yields `count` seeded damaged copies of `data`: ("truncate", a prefix), ("flip", one bit flipped),
    ("zero", a block of up to 64 bytes zeroed), ("garbage", random bytes appended) in turn."""
    rng = random.Random(seed)
    kinds = ("truncate", "flip", "zero", "garbage")
    for i in range(count):
        kind = kinds[i % len(kinds)]
        out = bytearray(data)
        if kind == "truncate":
            out = out[: rng.randrange(len(out))]
        elif kind == "flip":
            j = rng.randrange(len(out))
            out[j] ^= 1 << rng.randrange(8)
        elif kind == "zero":
            j = rng.randrange(len(out))
            n = rng.randint(1, 64)
            before = bytes(out[j:j + n])
            out[j:j + n] = bytes(len(out[j:j + n]))
            if before == bytes(len(before)):  # already zero there: flip a byte instead, so the copy differs
                out[j] ^= 0xFF
        else:
            out += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        assert bytes(out) != data
        yield kind, bytes(out)


# ---------------------------------------------------------------------------------------------- processes


def bench_env() -> dict[str, str]:
    """Returns the environment of bench.py subprocesses: one thread each (the machine has 2 cores)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def bench_cmd(*args: str) -> list[str]:
    return [sys.executable, str(BENCH), *[str(a) for a in args]]


def bench(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs bench.py to the end in its own process; returns the completed process (text output)."""
    return subprocess.run(bench_cmd(*args), cwd=cwd, env=bench_env(), capture_output=True, text=True,
                          timeout=timeout)


@dataclass
class KillPoint:
    """When to SIGKILL a running command: once this run has written `count` new files matching any of `patterns`
    (relative to the chain's base folder; what earlier runs left does not count, so every run must make progress
    before it dies), then after `delay` more seconds (seeded by the test). No patterns: `delay` seconds after the
    process started (in imports or the first reads)."""

    patterns: tuple[str, ...] = ()
    count: int = 1
    delay: float = 0.0
    hit: str = ""  # the newest file this run had written when it was killed (filled in by run_until)

    def describe(self) -> str:
        where = f"after {self.hit}" if self.hit else ("at start" if not self.patterns else "never reached")
        return f"{where} + {self.delay:.3f}s"


@dataclass
class KillLog:
    """What happened at each kill point of a chain: "killed" or "finished" (the command ended before)."""

    outcomes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def killed(self) -> int:
        return sum(o == "killed" for _, o in self.outcomes)


def written_since(base: Path, patterns: tuple[str, ...], since: float) -> list[Path]:
    """Returns the files matching any of `patterns` under `base` written at or after `since` (epoch seconds),
    oldest first."""
    found = {}
    for pattern in patterns:
        for path in base.glob(pattern):
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:  # removed meanwhile (Lightning keeps only the newest epoch file)
                continue
            if mtime >= since:
                found[path] = mtime
    return sorted(found, key=found.get)


def run_until(args: list[str], point: KillPoint, base: Path, cwd: Path, timeout: float = 600,
              on_kill: Callable[[], None] | None = None) -> str:
    """Starts bench.py `args`, SIGKILLs its process group at `point`; returns "killed" or "finished".

    A command that ends before the point must have succeeded (AssertionError with its stderr otherwise).
    on_kill runs right after the kill (e.g. to record which files exist)."""
    err = cwd / f"stderr-{time.monotonic_ns()}.txt"
    started = time.time()  # file mtimes are wall-clock times
    with open(err, "w") as fh:
        proc = subprocess.Popen(bench_cmd(*args), cwd=cwd, env=bench_env(), stdout=subprocess.DEVNULL, stderr=fh,
                                start_new_session=True)
    t0 = time.monotonic()
    armed_at = t0 if not point.patterns else None
    try:
        while proc.poll() is None:
            now = time.monotonic()
            if now - t0 > timeout:
                raise AssertionError(f"bench.py {' '.join(args[:2])} ran past {timeout} s")
            if armed_at is None and len(written_since(base, point.patterns, started)) >= point.count:
                armed_at = now
            if armed_at is not None and now - armed_at >= point.delay:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                new = written_since(base, point.patterns, started) if point.patterns else []
                point.hit = str(new[-1].relative_to(base)) if new else ""
                if on_kill is not None:
                    on_kill()
                return "killed"
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = err.read_text()
    assert proc.returncode == 0, f"bench.py {' '.join(args)} failed ({proc.returncode}):\n{text[-3000:]}"
    return "finished"


def kill_chain(args: list[str], points: list[KillPoint], base: Path, cwd: Path,
               on_kill: Callable[[KillPoint], None] | None = None) -> KillLog:
    """Runs `args` once per kill point, killing it there (each run resumes the previous one's state), then once
    more to the end; returns the outcome of every point. The final run must succeed."""
    log = KillLog()
    for point in points:
        outcome = run_until(args, point, base, cwd, on_kill=None if on_kill is None else lambda p=point: on_kill(p))
        log.outcomes.append((point.describe(), outcome))
    done = bench(*args, cwd=cwd)
    assert done.returncode == 0, f"bench.py {' '.join(args)} after the kills failed:\n{done.stderr[-3000:]}"
    return log


def record_figures(name: str, figures: dict) -> None:
    """Appends one JSON line of figures to $FAULTS_FIGURES when set (docs/reliability.md is written from them)."""
    target = os.environ.get("FAULTS_FIGURES")
    if target:
        with open(target, "a") as fh:
            fh.write(json.dumps({"test": name, **figures}, sort_keys=True) + "\n")


def stat_id(path: Path) -> tuple[int, int]:
    """Returns (inode, mtime ns): a file rewritten atomically (temp file + rename) gets a new inode."""
    st = path.stat()
    return st.st_ino, st.st_mtime_ns
