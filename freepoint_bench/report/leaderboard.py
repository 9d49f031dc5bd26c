"""The leaderboard as data: entries (mean ± sd over seeds, Δ vs scratch with a paired t-test), notes, quoted rows,
the label-efficiency curves and the probe ladder.

Only like cells are compared: seeds of an entry must share the protocol and split hashes, the fine-tuning recipe
(results.ResultRecord.recipe_hash) and the pretraining dataset, or they are a conflict and never averaged; a method
whose recipe differs from scratch's is "not comparable" (no Δ, not bold, the differing fields named); methods
pretrained on different datasets are named in the notes; the paper's rows are quoted only beside cells of the
paper's setting (quoted_rows).

Every protocol is scored by its task's metrics (results.task_metrics: AP / AP50 / AP25 for insseg and insseg-frozen,
mIoU / mAcc / allAcc for linear and semseg). Everything here is a plain function of the results store; the renderers
(render.py) only format it. Values stay fractions 0..1 here; the renderers show percent.
"""

from __future__ import annotations

import functools
import json
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from freepoint_bench.atomic import stable_hash
from freepoint_bench.harness.protocol import TASKS
from freepoint_bench.report.paper import (
    PAPER_DATASET,
    PAPER_EVAL_SCENES,
    PAPER_PRESET,
    PAPER_PRETRAIN_DATASET,
    QuotedRow,
    finetune_reference,
)
from freepoint_bench.report.store import ResultsStore
from freepoint_bench.results import (
    DEFAULT_DROPPED,
    DEFAULT_TASK,
    RECIPE_DEFAULTS,
    SEMANTIC_TASKS,
    ResultRecord,
    recipe_of,
    task_metrics,
)

BASELINE = "scratch"
ALPHA = 0.05  # significance level of one star; two stars at ALPHA / 5
HASH_CHARS = 12  # hex digits shown when a report names a hash
ZERO_SPREAD = 1e-9  # sd of paired differences (fractions) below this counts as zero
NAMED_FIELDS = 3  # recipe fields a "not comparable" names before "+N more"
METRIC_LABELS = {"ap": "AP", "ap50": "AP50", "ap25": "AP25", "miou": "mIoU", "macc": "mAcc", "all_acc": "allAcc"}
# One number per rung for the ladder and the label-efficiency plot: each task's strictest summary, the one its field
# leads with. mIoU for the semantic tasks (the linear probe's headline in Sonata, issue 28); AP (mean over IoU
# 0.5:0.95) for the instance tasks, the first column of the paper's Tables 2 and 3 and what the label-efficiency plot
# has always drawn. AP50 is more lenient (issue 28's 40-epoch synthetic run: AP 2.4, AP50 7.1) and stays in the tables.
HEADLINE = {task: "miou" if task in SEMANTIC_TASKS else "ap" for task in TASKS}


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

    A conflict entry holds runs that disagree on protocol_hash, split_sha256, recipe_hash or pretrain_dataset; it is
    never averaged and `reason` says which seeds carry which value. A partial entry lacks seeds that other entries
    of its protocol have (or that are still running). An entry whose recipe differs from its protocol's reference
    (scratch's, or the first method's where scratch has no values) is not comparable: `not_comparable` names the
    fields, it gets no Δ and is never bold.
    """

    protocol: str
    method: str
    status: str
    seeds: list[int] = field(default_factory=list)
    expected: list[int] = field(default_factory=list)
    metrics: dict[str, MetricStat] = field(default_factory=dict)
    per_class: dict[str, MetricStat] = field(default_factory=dict)  # class -> AP (semantic tasks: IoU) over seeds
    protocol_hash: str = ""
    split_sha256: str = ""
    reason: str = ""
    delta_note: str = ""  # why Δ is absent, when it is
    recipe: dict[str, Any] = field(default_factory=dict)  # results.ResultRecord.recipe of its runs
    recipe_hash: str = ""
    preset: str = ""  # the fine-tuning preset's name (a label: recipe compares the values)
    pretrain_dataset: str = ""  # '' for random initialisation (scratch)
    not_comparable: str = ""  # 'epochs 600 vs scratch's 20' when its recipe differs from the reference's

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
    task: str = DEFAULT_TASK  # what its cells train and score (harness.protocol.TASKS)
    dropped: str = DEFAULT_DROPPED  # what its dropped masks became (harness.protocol.DroppedMasks)

    @property
    def metrics(self) -> tuple[str, ...]:
        """Returns the metrics of the protocol's task (its columns)."""
        return task_metrics(self.task)[0]

    @property
    def semantic(self) -> bool:
        return self.task in SEMANTIC_TASKS

    @property
    def class_metric(self) -> str:
        """Returns the per-class metric its per-class table shows: iou for the semantic tasks, else ap."""
        return "iou" if self.semantic else "ap"


@dataclass
class Leaderboard:
    """Rows (methods) × columns (protocols × metrics) of entries, the best entries per column, notes, quoted rows."""

    protocols: list[ProtocolInfo]
    methods: list[str]
    entries: dict[tuple[str, str], Entry]
    best: dict[tuple[str, str], set[str]]  # (protocol, metric) -> methods with the best mean among complete entries
    references: dict[str, list[QuotedRow]]  # protocol -> the paper's rows quoted beside its cells (quoted_rows)
    notes: list[str]
    classes: list[str]  # of the instance tasks' per-class AP
    semantic_classes: list[str] = field(default_factory=list)  # of the semantic tasks' per-class IoU

    def entry(self, protocol: str, method: str) -> Entry:
        return self.entries[(protocol, method)]

    @property
    def shows_tasks(self) -> bool:
        """Returns whether the report names each table's task: when any protocol is not plain insseg (a store of
        insseg cells only reads as it did before tasks existed)."""
        return any(p.task != DEFAULT_TASK for p in self.protocols)

    def task_groups(self) -> list[tuple[str, list[ProtocolInfo]]]:
        """Returns the protocols grouped by task, cheapest rung first (linear, insseg-frozen, semseg, insseg)."""
        groups: dict[str, list[ProtocolInfo]] = {}
        for p in self.protocols:
            groups.setdefault(p.task, []).append(p)
        return list(groups.items())

    @property
    def seeds(self) -> list[int]:
        return sorted({s for c in self.entries.values() for s in c.seeds})


def short(h: str) -> str:
    """Returns the first HASH_CHARS hex digits of a hash."""
    return h[:HASH_CHARS]


def _seed_list(seeds: list[int]) -> str:
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, sorted(seeds)))


def _disagreement(runs: list[ResultRecord], key: str, show: Callable[[str], str] = short) -> str:
    """Returns '' when the runs agree on `key`, else which seeds carry which value (`show` of it); for recipe_hash,
    the fields in which the first two differ."""
    groups: dict[str, list[ResultRecord]] = defaultdict(list)
    for r in runs:
        groups[getattr(r, key)].append(r)
    if len(groups) < 2:
        return ""
    ordered = sorted(groups.items(), key=lambda kv: min(r.seed for r in kv[1]))
    parts = [f"{_seed_list([r.seed for r in rs])} → {show(h) or 'none'}" for h, rs in ordered]
    fields = ""
    if key == "recipe_hash":
        (_, first), (_, second) = ordered[:2]
        fields = ": " + recipe_difference(first[0].recipe, second[0].recipe, first[0].preset, second[0].preset)
    return f"{key} differs ({'; '.join(parts)}{fields})"


def _value_text(value: Any) -> str:
    """Returns a config value as --set takes it (none, true, 0.0001, 34C)."""
    return value if isinstance(value, str) else json.dumps(value).replace("null", "none")


def recipe_difference(a: dict[str, Any], b: dict[str, Any], preset_a: str = "", preset_b: str = "",
                      other: str = "") -> str:
    """Returns the fields in which recipe a differs from recipe b, as --set names them: 'epochs 600 vs 20, lr 0.0001
    vs 0.003 (+5 more)' (the first NAMED_FIELDS, top-level ones first; 'absent' for a field a recipe lacks, its
    default for one of RECIPE_DEFAULTS: 'dropped background vs ignore'), led by 'preset paper vs cpu-small' where the
    preset names differ too; `other` names b's owner ('vs scratch's 20')."""
    absent = object()
    keys = list(dict.fromkeys([*a, *b]))
    # top-level fields (epochs, the budget) first, then by name: the order does not hang on a file's key order
    differ = sorted((k for k in keys if a.get(k, absent) != b.get(k, absent)), key=lambda k: (k.count("."), k))
    whose = f"{other}'s " if other else ""

    def text(k: str) -> str:
        x, y = (_value_text(v) if v is not absent else RECIPE_DEFAULTS.get(k, "absent")
                for v in (a.get(k, absent), b.get(k, absent)))
        return f"{k.removeprefix('train.')} {x} vs {whose}{y}"

    named = [text(k) for k in differ[:NAMED_FIELDS]]
    more = f" (+{len(differ) - NAMED_FIELDS} more)" if len(differ) > NAMED_FIELDS else ""
    lead = f"preset {preset_a or '?'} vs {whose}{preset_b or '?'}; " if preset_a != preset_b else ""
    return lead + ", ".join(named) + more


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


def _class_stat(runs: list[ResultRecord], name: str, metric: str) -> MetricStat:
    values = {}
    for r in runs:
        v = r.class_scores.get(name, {}).get(metric, math.nan)
        if not math.isnan(v):
            values[r.seed] = v
    return MetricStat(values)


def _task_rank(task: str) -> int:
    """Returns a task's place on the ladder (TASKS, cheapest first); a task this version does not know comes last."""
    return TASKS.index(task) if task in TASKS else len(TASKS)


def _build_entry(info: ProtocolInfo, method: str, runs: list[ResultRecord], expected: list[int],
                 running: list[int]) -> Entry:
    protocol = info.name
    if not runs:
        reason = f"no finished run; {_seed_list(running)} unfinished" if running else "not run"
        return Entry(protocol, method, "missing", expected=expected, reason=reason)
    seeds = sorted(r.seed for r in runs)
    conflicts = [
        d
        for d in (
            _disagreement(runs, "protocol_hash"),
            _disagreement(runs, "split_sha256"),
            _disagreement(runs, "recipe_hash"),
            "" if method == BASELINE else _disagreement(runs, "pretrain_dataset", show=str),
        )
        if d
    ]
    other = sorted({r.task for r in runs} - {info.task})
    if other:  # scored by other metrics: never in the protocol's columns (its hash differs too, where hashed)
        odd = [r.seed for r in runs if r.task != info.task]
        conflicts.append(f"task differs ({_seed_list(odd)} → {', '.join(other)}; the protocol's: {info.task})")
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
        metrics={m: _stat(runs, m) for m in info.metrics},
        per_class={c: _class_stat(runs, c, info.class_metric) for c in classes},
        protocol_hash=runs[0].protocol_hash,
        split_sha256=runs[0].split_sha256,
        reason=reason,
        recipe=runs[0].recipe,
        recipe_hash=runs[0].recipe_hash,
        preset=runs[0].preset,
        # scratch's checkpoint (older files name the dataset it was built for in its id) saw no data
        pretrain_dataset="" if method == BASELINE else runs[0].pretrain_dataset,
    )


def _mark_comparable(entry: Entry, reference: Entry | None) -> None:
    """Sets entry.not_comparable when its recipe differs from the reference entry's."""
    if reference is None or entry is reference or not entry.has_values or entry.recipe_hash == reference.recipe_hash:
        return
    entry.not_comparable = recipe_difference(entry.recipe, reference.recipe, entry.preset, reference.preset,
                                             reference.method)


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
    if entry.not_comparable:  # another recipe than scratch's: the notes name the fields
        return
    for m, stat in entry.metrics.items():
        entry.metrics[m] = MetricStat(stat.values, paired_test(stat.values, base.metrics[m].values))
    if not any(s.paired for s in entry.metrics.values()):
        entry.delta_note = f"no Δ: no seed in common with scratch ({_seed_list(base.seeds)})"


def build_leaderboard(store: ResultsStore) -> Leaderboard:
    """Returns the leaderboard of a results store (see Entry for the statuses and the Δ rules), protocols ordered by
    task, cheapest rung first, then as the store orders them."""
    by_entry: dict[tuple[str, str], list[ResultRecord]] = defaultdict(list)
    for r in store.runs:
        by_entry[(r.protocol, r.method)].append(r)
    running: dict[tuple[str, str], list[int]] = defaultdict(list)
    for protocol, method, seed in store.unfinished:
        running[(protocol, method)].append(seed)
    methods = [m for m in store.methods() if any(k[1] == m for k in by_entry)]
    infos: list[ProtocolInfo] = []
    for p in store.protocols():
        # what a protocol is, from its first run (scratch's where it ran): a run of another task is a conflict
        first = next(r for m in methods for r in sorted(by_entry.get((p, m), []), key=lambda r: r.seed))
        info = ProtocolInfo(p, first.dataset, first.unit, first.fraction, tuple(sorted(first.eval_scenes)), first.task,
                            first.dropped)
        infos.append(info)
    infos.sort(key=lambda i: _task_rank(i.task))
    entries: dict[tuple[str, str], Entry] = {}
    notes: list[str] = []
    references: dict[str, list[QuotedRow]] = {}
    for info in infos:
        p = info.name
        expected = sorted(
            {r.seed for m in methods for r in by_entry.get((p, m), [])} | {s for m in methods for s in running[(p, m)]}
        )
        for m in methods:
            entries[(p, m)] = _build_entry(
                info, m, sorted(by_entry.get((p, m), []), key=lambda r: r.seed), expected, running[(p, m)]
            )
        ran = [entries[(p, m)] for m in methods if entries[(p, m)].has_values]
        base = entries.get((p, BASELINE))
        reference = base if base is not None and base.has_values else next(iter(ran), None)
        for m in methods:
            _mark_comparable(entries[(p, m)], reference)
            _add_deltas(entries[(p, m)], base)
        notes += _pretraining_notes(p, ran) + _dropped_notes(p, ran)
        references[p], quote_notes = quoted_rows(info, ran)
        notes += quote_notes
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
    for info in infos:
        p = info.name
        for metric in info.metrics:
            complete = {
                m: entries[(p, m)].metrics[metric].mean
                for m in methods
                if entries[(p, m)].status == "ok" and not entries[(p, m)].not_comparable
            }
            complete = {m: v for m, v in complete.items() if not math.isnan(v)}
            if complete:
                top = max(complete.values())
                best[(p, metric)] = {m for m, v in complete.items() if v == top}
    for c in entries.values():
        if c.status == "conflict":
            notes.append(f"{c.protocol}/{c.method}: {c.reason}")
        if c.not_comparable:
            notes.append(f"{c.protocol}/{c.method}: not comparable (another fine-tuning recipe): {c.not_comparable}")
    semantic = {i.name for i in infos if i.semantic}
    classes = sorted({name for c in entries.values() if c.protocol not in semantic for name in c.per_class})
    semantic_classes = sorted({name for c in entries.values() if c.protocol in semantic for name in c.per_class})
    return Leaderboard(
        infos, methods, entries, best, references, sorted(set(notes), key=notes.index), classes, semantic_classes
    )


def _pretraining_notes(protocol: str, ran: list[Entry]) -> list[str]:
    """Returns a note when the pretrained methods of a protocol were pretrained on different datasets (scratch has
    none); their Δ against scratch stands, but they are not each other's like."""
    by_data: dict[str, list[str]] = defaultdict(list)
    for c in ran:
        if c.method != BASELINE and c.pretrain_dataset:
            by_data[c.pretrain_dataset].append(c.method)
    if len(by_data) < 2:
        return []
    parts = [f"{data} ({', '.join(ms)})" for data, ms in sorted(by_data.items())]
    return [f"{protocol}: pretrained on {' vs '.join(parts)}; compare these methods with each other only knowing so"]


def _dropped_notes(protocol: str, ran: list[Entry]) -> list[str]:
    """Returns a note when entries of a protocol trained with their dropped masks as background, not ignored (the
    recipe's "dropped"), naming the methods where the protocol's entries differ in it (those are not comparable)."""
    by_kind: dict[str, list[str]] = defaultdict(list)
    for c in ran:
        by_kind[str(c.recipe.get("dropped", DEFAULT_DROPPED))].append(c.method)
    if set(by_kind) <= {DEFAULT_DROPPED}:
        return []
    what = "the points of the masks it drops trained as background (loss points of no target), not ignored"
    if len(by_kind) == 1:
        return [f"{protocol}: dropped masks: {next(iter(by_kind))} ({what})"]
    parts = [f"{kind} for {', '.join(ms)}" for kind, ms in sorted(by_kind.items())]
    return [f"{protocol}: dropped masks: {'; '.join(parts)}; background: {what}"]


@functools.cache
def paper_recipe() -> dict[str, Any]:
    """Returns the recipe (results.recipe_of) of the `paper` fine-tuning preset as this code defines it."""
    from freepoint_bench.harness.finetune import finetune_config  # torch: imported only for protocols the paper has

    return recipe_of(finetune_config(PAPER_PRESET).model_dump(mode="json"))


def quoted_rows(info: ProtocolInfo, ran: list[Entry]) -> tuple[list[QuotedRow], list[str]]:
    """Returns (the paper's rows to quote beside a protocol's entries with values, notes on the rows left out).

    The paper's rows of a protocol (paper.finetune_reference) are quoted only where its cells are the paper's
    setting: scored on all PAPER_EVAL_SCENES rooms of S3DIS Area 5, and some entry of the paper preset's recipe. A
    method that ran here with another recipe, or pretrained on other data than ScanNet, loses its own row."""
    rows = finetune_reference(info.name)
    if not rows:
        return [], []
    setting = []
    if info.dataset != PAPER_DATASET:
        setting.append(f"scored on {info.dataset or 'unnamed data'}, not {PAPER_DATASET}")
    if len(info.eval_scenes) != PAPER_EVAL_SCENES:
        setting.append(f"{len(info.eval_scenes)} evaluation scenes, not Area 5's {PAPER_EVAL_SCENES}")
    off: dict[str, str] = {}
    for c in ran:
        why = []
        if c.recipe != paper_recipe():
            why.append("its recipe is not the paper preset's: " + recipe_difference(
                c.recipe, paper_recipe(), c.preset, PAPER_PRESET, "the paper preset"))
        if c.method != BASELINE and c.pretrain_dataset != PAPER_PRETRAIN_DATASET:
            why.append(f"pretrained on {c.pretrain_dataset}, not {PAPER_PRETRAIN_DATASET}")
        if why:
            off[c.method] = "; ".join(why)
    if not setting and len(off) == len(ran):
        setting.append("no cell here is of the paper's setting")
    source = f"the paper's {rows[0].source} rows"
    if setting:
        details = "; ".join(setting + [f"{m}: {why}" for m, why in off.items()])
        return [], [f"{info.name}: {source} are not quoted ({details})"]
    notes = [f"{info.name}: {source} quoted without {m}'s ({why})" for m, why in off.items()]
    return [r for r in rows if r.method not in off], notes


def label_efficiency(
    board: Leaderboard, metric: str = "ap", task: str = DEFAULT_TASK
) -> dict[tuple, dict[str, list[tuple]]]:
    """Returns {(dataset, unit, num eval scenes, their digest): {method: [(fraction, mean, sd, n), ...]}} of one task's
    protocols (`metric` one of that task's).

    Protocols share a panel when they score the same scenes with the same unit (S3DIS Area 5 at 10 and 20%
    of the masks; not the 6-fold protocol, not synthetic rooms in S3DIS's layout). A protocol of unit "full"
    is the fraction-1.0 point of every unit on its scenes. Only entries with values count; points sorted by fraction.
    """
    protocols = [p for p in board.protocols if p.task == task]
    units: dict[tuple, set[str]] = defaultdict(set)
    for p in protocols:
        if p.unit != "full":
            units[(p.dataset, p.eval_scenes)].add(p.unit)
    curves: dict[tuple, dict[str, list[tuple]]] = defaultdict(lambda: defaultdict(list))
    for p in protocols:
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


def label_efficiency_panels(board: Leaderboard) -> dict[tuple, dict[str, list[tuple]]]:
    """Returns label_efficiency's panels of every task, each on its task's HEADLINE metric, keyed (task, dataset,
    unit, num eval scenes, digest); tasks cheapest rung first."""
    return {
        (task, *key): curves
        for task, _ in board.task_groups()
        for key, curves in label_efficiency(board, HEADLINE.get(task, "ap"), task).items()
    }


@dataclass(frozen=True)
class LadderGroup:
    """The rungs one dataset's evaluated scenes were scored on: protocols of at least two tasks, cheapest first."""

    dataset: str
    eval_scenes: tuple[str, ...]
    rungs: list[ProtocolInfo]  # by task (linear, insseg-frozen, semseg, insseg), then fraction, unit and name
    methods: list[str]  # those with values on some rung

    def metric(self, rung: ProtocolInfo) -> str:
        """Returns the rung's headline metric (HEADLINE)."""
        return HEADLINE.get(rung.task, rung.metrics[0])


def ladder(board: Leaderboard) -> list[LadderGroup]:
    """Returns the probe ladder per (dataset, evaluated scenes): the groups whose protocols span two tasks or more
    (one task's fractions are the label-efficiency plot's), in dataset order."""
    groups: dict[tuple[str, tuple[str, ...]], list[ProtocolInfo]] = defaultdict(list)
    for p in board.protocols:
        groups[(p.dataset, p.eval_scenes)].append(p)
    out = []
    for (dataset, scenes), rungs in sorted(groups.items()):
        if len({p.task for p in rungs}) < 2:
            continue
        rungs = sorted(rungs, key=lambda p: (_task_rank(p.task), p.fraction, p.unit, p.name))
        methods = [m for m in board.methods if any(board.entry(p.name, m).has_values for p in rungs)]
        out.append(LadderGroup(dataset, scenes, rungs, methods))
    return out


def protocol_label(board: Leaderboard, protocol: ProtocolInfo) -> str:
    """Returns how a row names a protocol: its name, with its task when the report names tasks."""
    return f"{protocol.name} ({protocol.task})" if board.shows_tasks else protocol.name
