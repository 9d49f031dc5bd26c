"""The leaderboard as data: entries (mean ± sd over seeds, Δ vs scratch with a paired t-test), notes, quoted rows.

Everything here is a plain function of the results store; the renderers (render.py) only format it.
Values stay fractions 0..1 here; the renderers show percent.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from freepoint_bench.atomic import stable_hash
from freepoint_bench.report.paper import QuotedRow, finetune_reference
from freepoint_bench.report.store import ResultsStore
from freepoint_bench.results import METRICS, SEMANTIC_TASKS, ResultRecord

BASELINE = "scratch"
ALPHA = 0.05  # significance level of one star; two stars at ALPHA / 5
HASH_CHARS = 12  # hex digits shown when a report names a hash
ZERO_SPREAD = 1e-9  # sd of paired differences (fractions) below this counts as zero


@dataclass(frozen=True)
class Paired:
    """Δ of an entry against the scratch entry of its protocol, over the seeds both have."""

    delta: float  # mean of (method - scratch) over the paired seeds, fraction
    p: float  # two-sided paired t-test; NaN when fewer than 2 pairs
    n: int  # paired seeds

    @property
    def stars(self) -> str:
        """Returns '**' when p < ALPHA / 5, '*' when p < ALPHA, else ''."""
        if math.isnan(self.p):
            return ""
        return "**" if self.p < ALPHA / 5 else "*" if self.p < ALPHA else ""


@dataclass(frozen=True)
class MetricStat:
    """One metric of one entry: its values per seed (NaN dropped), mean and sample sd (NaN when n < 2)."""

    values: dict[int, float]
    paired: Paired | None = None

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.values.values()))) if self.values else math.nan

    @property
    def sd(self) -> float:
        return float(np.std(list(self.values.values()), ddof=1)) if self.n >= 2 else math.nan


@dataclass
class Entry:
    """One leaderboard entry, a method on a protocol over its seeds (the harness's cells of that protocol and method):
    status ok | partial | missing | conflict, its seeds and metrics.

    A conflict entry holds runs that disagree on protocol_hash or split_sha256; it is never averaged and
    `reason` says which seeds carry which hash. A partial entry lacks seeds that other entries of its
    protocol have (or that are still running).
    """

    protocol: str
    method: str
    status: str
    seeds: list[int] = field(default_factory=list)
    expected: list[int] = field(default_factory=list)
    metrics: dict[str, MetricStat] = field(default_factory=dict)
    per_class: dict[str, MetricStat] = field(default_factory=dict)  # class -> AP over seeds
    protocol_hash: str = ""
    split_sha256: str = ""
    reason: str = ""
    delta_note: str = ""  # why Δ is absent, when it is

    @property
    def has_values(self) -> bool:
        return self.status in ("ok", "partial")


@dataclass(frozen=True)
class ProtocolInfo:
    """A leaderboard column group: a protocol and what its runs record about it."""

    name: str
    dataset: str
    unit: str
    fraction: float
    eval_scenes: tuple[str, ...] = ()  # what it scores: protocols on the same scenes share a label-efficiency panel


@dataclass
class Leaderboard:
    """Rows (methods) × columns (protocols × metrics) of entries, the best entries per column, notes, quoted rows."""

    protocols: list[ProtocolInfo]
    methods: list[str]
    entries: dict[tuple[str, str], Entry]
    best: dict[tuple[str, str], set[str]]  # (protocol, metric) -> methods with the best mean among complete entries
    references: dict[str, list[QuotedRow]]  # protocol -> the paper's rows of that setting
    notes: list[str]
    classes: list[str]

    def entry(self, protocol: str, method: str) -> Entry:
        return self.entries[(protocol, method)]

    @property
    def seeds(self) -> list[int]:
        return sorted({s for c in self.entries.values() for s in c.seeds})


def short(h: str) -> str:
    """Returns the first HASH_CHARS hex digits of a hash."""
    return h[:HASH_CHARS]


def _seed_list(seeds: list[int]) -> str:
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, sorted(seeds)))


def _disagreement(runs: list[ResultRecord], key: str) -> str:
    """Returns '' when the runs agree on `key`, else which seeds carry which value."""
    groups: dict[str, list[int]] = defaultdict(list)
    for r in runs:
        groups[getattr(r, key)].append(r.seed)
    if len(groups) < 2:
        return ""
    parts = [f"{_seed_list(seeds)} → {short(h)}" for h, seeds in sorted(groups.items(), key=lambda kv: min(kv[1]))]
    return f"{key} differs ({'; '.join(parts)})"


def paired_test(method: dict[int, float], baseline: dict[int, float]) -> Paired | None:
    """Returns Δ = mean(method - baseline) over common seeds and the two-sided paired t-test's p; None if none common.

    With one pair p is NaN (no test). With zero spread of the differences the t statistic is ±inf
    (p = 0) unless every difference is 0 (p = 1), which is what the test's limit says.
    """
    common = sorted(set(method) & set(baseline))
    if not common:
        return None
    d = np.array([method[s] - baseline[s] for s in common], dtype=float)
    n = d.size
    if n < 2:
        return Paired(float(d.mean()), math.nan, n)
    sd = float(np.std(d, ddof=1))
    if sd < ZERO_SPREAD:  # equal differences up to float noise (0.46 - 0.45 != 0.48 - 0.47 in binary)
        return Paired(float(d.mean()), 1.0 if d.mean() == 0 else 0.0, n)
    t = float(d.mean()) / (sd / math.sqrt(n))
    return Paired(float(d.mean()), float(2 * stats.t.sf(abs(t), df=n - 1)), n)


def _stat(runs: list[ResultRecord], metric: str) -> MetricStat:
    return MetricStat({r.seed: r.scores[metric] for r in runs if not math.isnan(r.scores[metric])})


def _class_stat(runs: list[ResultRecord], name: str) -> MetricStat:
    values = {}
    for r in runs:
        v = r.class_scores.get(name, {}).get("ap", math.nan)
        if not math.isnan(v):
            values[r.seed] = v
    return MetricStat(values)


def _build_entry(protocol: str, method: str, runs: list[ResultRecord], expected: list[int],
                 running: list[int]) -> Entry:
    if not runs:
        reason = f"no finished run; {_seed_list(running)} unfinished" if running else "not run"
        return Entry(protocol, method, "missing", expected=expected, reason=reason)
    seeds = sorted(r.seed for r in runs)
    conflicts = [d for d in (_disagreement(runs, "protocol_hash"), _disagreement(runs, "split_sha256")) if d]
    if conflicts:
        return Entry(
            protocol, method, "conflict", seeds=seeds, expected=expected, reason="not averaged: " + "; ".join(conflicts)
        )
    classes = sorted({c for r in runs for c in r.class_scores})
    status, reason = "ok", ""
    lacking = sorted(set(expected) - set(seeds))
    if lacking:
        status = "partial"
        unfinished = sorted(set(lacking) & set(running))
        reason = f"{len(seeds)} of {len(expected)} seeds; {_seed_list(lacking)} " + (
            "unfinished" if unfinished == lacking else "missing"
        )
    return Entry(
        protocol,
        method,
        status,
        seeds=seeds,
        expected=expected,
        metrics={m: _stat(runs, m) for m in METRICS},
        per_class={c: _class_stat(runs, c) for c in classes},
        protocol_hash=runs[0].protocol_hash,
        split_sha256=runs[0].split_sha256,
        reason=reason,
    )


def _add_deltas(entry: Entry, base: Entry | None) -> None:
    if entry.method == BASELINE or not entry.has_values:
        return
    if base is None or base.status == "missing":
        entry.delta_note = "no Δ: scratch not run in this protocol"
        return
    if base.status == "conflict":
        entry.delta_note = "no Δ: scratch entry not averaged (hash conflict)"
        return
    for key in ("protocol_hash", "split_sha256"):
        if getattr(entry, key) != getattr(base, key):
            entry.delta_note = (
                f"no Δ: {key} {short(getattr(entry, key))} differs from scratch's {short(getattr(base, key))}"
            )
            return
    for m, stat in entry.metrics.items():
        entry.metrics[m] = MetricStat(stat.values, paired_test(stat.values, base.metrics[m].values))
    if not any(s.paired for s in entry.metrics.values()):
        entry.delta_note = f"no Δ: no seed in common with scratch ({_seed_list(base.seeds)})"


def build_leaderboard(store: ResultsStore) -> Leaderboard:
    """Returns the leaderboard of a results store (see Entry for the statuses and the Δ rules)."""
    # The tables are instance segmentation's (AP / AP50 / AP25): cells of the semantic tasks (linear, semseg) are
    # left out with a note instead of being averaged with metrics they do not have.
    semantic = sorted({(r.protocol, r.task) for r in store.runs if r.task in SEMANTIC_TASKS})
    skipped = {p for p, _ in semantic}
    by_entry: dict[tuple[str, str], list[ResultRecord]] = defaultdict(list)
    for r in store.runs:
        if r.protocol not in skipped:
            by_entry[(r.protocol, r.method)].append(r)
    running: dict[tuple[str, str], list[int]] = defaultdict(list)
    for protocol, method, seed in store.unfinished:
        running[(protocol, method)].append(seed)
    protocols = [p for p in store.protocols() if p not in skipped]
    methods = [m for m in store.methods() if any(k[1] == m for k in by_entry)]
    entries: dict[tuple[str, str], Entry] = {}
    notes: list[str] = [
        f"{p}: {task} results (mIoU / mAcc / allAcc) are not in these instance-segmentation tables; read them in "
        f"its result.json files" for p, task in semantic
    ]
    infos: list[ProtocolInfo] = []
    references: dict[str, list[QuotedRow]] = {}
    for p in protocols:
        expected = sorted(
            {r.seed for m in methods for r in by_entry.get((p, m), [])} | {s for m in methods for s in running[(p, m)]}
        )
        for m in methods:
            entries[(p, m)] = _build_entry(
                p, m, sorted(by_entry.get((p, m), []), key=lambda r: r.seed), expected, running[(p, m)]
            )
        for m in methods:
            _add_deltas(entries[(p, m)], entries.get((p, BASELINE)))
        first = next(r for m in methods for r in by_entry.get((p, m), []))
        infos.append(ProtocolInfo(p, first.dataset, first.unit, first.fraction, tuple(sorted(first.eval_scenes))))
        references[p] = finetune_reference(p)
        versions = {c.protocol_hash for c in (entries[(p, m)] for m in methods) if c.has_values}
        if len(versions) > 1:
            parts = [
                f"{short(h)}: {', '.join(m for m in methods if entries[(p, m)].protocol_hash == h)}"
                for h in sorted(versions)
            ]
            notes.append(f"{p}: the methods ran different versions of the protocol ({'; '.join(parts)})")
    # the other way round too: seeds of methods that never finished a run anywhere
    for protocol, method, _seed in store.unfinished:
        if (protocol, method) not in entries:
            notes.append(f"{protocol}/{method}: only unfinished runs")
    best: dict[tuple[str, str], set[str]] = {}
    for p in protocols:
        for metric in METRICS:
            complete = {m: entries[(p, m)].metrics[metric].mean for m in methods if entries[(p, m)].status == "ok"}
            complete = {m: v for m, v in complete.items() if not math.isnan(v)}
            if complete:
                top = max(complete.values())
                best[(p, metric)] = {m for m, v in complete.items() if v == top}
    for c in entries.values():
        if c.status == "conflict":
            notes.append(f"{c.protocol}/{c.method}: {c.reason}")
    classes = sorted({name for c in entries.values() for name in c.per_class})
    return Leaderboard(infos, methods, entries, best, references, sorted(set(notes), key=notes.index), classes)


def label_efficiency(board: Leaderboard, metric: str = "ap") -> dict[tuple, dict[str, list[tuple]]]:
    """Returns {(dataset, unit, num eval scenes, their digest): {method: [(fraction, mean, sd, n), ...]}}.

    Protocols share a panel when they score the same scenes with the same unit (S3DIS Area 5 at 10 and 20%
    of the masks; not the 6-fold protocol, not synthetic rooms in S3DIS's layout). A protocol of unit "full"
    is the fraction-1.0 point of every unit on its scenes. Only entries with values count; points sorted by fraction.
    """
    units: dict[tuple, set[str]] = defaultdict(set)
    for p in board.protocols:
        if p.unit != "full":
            units[(p.dataset, p.eval_scenes)].add(p.unit)
    curves: dict[tuple, dict[str, list[tuple]]] = defaultdict(lambda: defaultdict(list))
    for p in board.protocols:
        group = (p.dataset, p.eval_scenes)
        targets = sorted(units[group]) if p.unit == "full" else [p.unit]
        for unit in targets or ["full"]:
            for m in board.methods:
                c = board.entry(p.name, m)
                if c.has_values and c.metrics[metric].n:
                    s = c.metrics[metric]
                    curves[(p.dataset, unit, len(p.eval_scenes), p.eval_scenes)][m].append(
                        (p.fraction, s.mean, s.sd, s.n)
                    )
    return {
        (dataset, unit, n, stable_hash(list(scenes), length=8)): {m: sorted(pts) for m, pts in v.items()}
        for (dataset, unit, n, scenes), v in sorted(curves.items())
    }
