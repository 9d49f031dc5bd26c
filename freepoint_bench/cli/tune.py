"""`bench.py tune`: Optuna over the pseudo-label config, optionally cross-validated by room."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from freepoint_bench.cli.common import (
    DEFAULT_CACHE,
    CacheOpt,
    DatasetOpt,
    FeaturesDeviceOpt,
    PresetOpt,
    RootOpt,
    ScenesOpt,
    SplitOpt,
    console,
    floats,
    fmt_pct,
    open_store,
    parse_device,
    progress_bars,
    pseudo_config,
    select_split,
)
from freepoint_bench.errors import ConfigError


def tune_cmd(
    ctx: typer.Context,
    dataset: DatasetOpt,
    root: RootOpt = None,
    cache: CacheOpt = DEFAULT_CACHE,
    scene: ScenesOpt = None,
    split: SplitOpt = None,
    trials: Annotated[int, typer.Option("--trials", "-n", help="Trials to add to the study.")] = 40,
    objective: Annotated[str, typer.Option("--objective", help="Metric maximised: ap, ap50 or ap25.")] = "ap50",
    storage: Annotated[
        str | None, typer.Option("--storage", help="Optuna storage URL, e.g. sqlite:///runs/optuna.db (resumable).")
    ] = None,
    study: Annotated[str, typer.Option("--study", help="Study name (same storage + name continues it).")] = (
        "freepoint-pseudo-labels"
    ),
    jobs: Annotated[int, typer.Option("--jobs", help="Parallel trials (threads).")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="TPE sampler seed.")] = 0,
    tune_sigma: Annotated[bool, typer.Option("--tune-sigma", help="Also tune σ_low.")] = False,
    tune_k1: Annotated[bool, typer.Option("--tune-k1", help="Also tune k1 (4, 6, 8).")] = False,
    tune_plane: Annotated[bool, typer.Option("--tune-plane", help="Also tune the plane distance threshold.")] = False,
    tune_config: Annotated[
        Path | None, typer.Option("--tune-config", help="TOML with any TuneConfig field (search ranges...).")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Base PseudoLabelConfig TOML.")] = None,
    config_preset: PresetOpt = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a base config field: key=value.")
    ] = None,
    features: Annotated[
        Path | None, typer.Option("--features", help="Backbone checkpoint: deep features join (and α_emb is tuned).")
    ] = None,
    device: FeaturesDeviceOpt = "auto",
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for best.toml and plots.")] = Path("runs/tune"),
    cv: Annotated[
        str | None,
        typer.Option("--cv", help="rooms: cross-validate by room (leave one room out, or --folds k) before choosing."),
    ] = None,
    folds: Annotated[int | None, typer.Option("--folds", help="With --cv rooms: k folds of whole rooms.")] = None,
    sigma_grid: Annotated[
        list[str] | None,
        typer.Option("--sigma-grid", help="Tune σ_low alone over these values (grid search, α fixed): 0.5,0.7,0.9."),
    ] = None,
) -> None:
    """Tune FreePoint's affinity weights α (and optionally σ, k1, plane threshold) with Optuna on labelled scenes."""
    from freepoint_bench.atomic import ensure_dir
    from freepoint_bench.tuning import TuneConfig, run_study, save_plots, write_best_config

    base = pseudo_config(config, overrides, config_preset)
    device = parse_device(device)  # before any data is read: a GPU the machine lacks is one line
    flags = dict(
        trials=trials,
        objective=objective,
        storage=storage,
        study_name=study,
        jobs=jobs,
        seed=seed,
        tune_sigma_low=tune_sigma,
        tune_k1=tune_k1,
        tune_plane_distance=tune_plane,
    )
    params = {"study_name": "study", "tune_sigma_low": "tune_sigma", "tune_plane_distance": "tune_plane"}
    # by name: typer ships its own copy of click's ParameterSource enum
    typed = {k for k in flags if getattr(ctx.get_parameter_source(params.get(k, k)), "name", None) == "COMMANDLINE"}
    tcfg = TuneConfig.from_flags(flags, typed, tune_config, floats(sigma_grid, "--sigma-grid") or ())
    ensure_dir(out)  # before the study: a study's trials must not be lost to an --out that cannot be written
    store, names = open_store(dataset, root, cache, scene)
    names = select_split(store, names, split)
    scenes = [store.load(n) for n in names]
    features_fn = None
    if features is not None:
        from freepoint_bench.engine.features import BackboneFeatures

        features_fn = BackboneFeatures(features, device=device)
    from freepoint_bench.tuning.objective import evaluation_spec_for

    if cv is not None or folds is not None:
        _tune_cv(cv, folds, scenes, base, tcfg, features_fn, evaluation_spec_for(dataset), out, dataset)
        return
    with progress_bars() as progress:
        task = progress.add_task(f"tune ({objective})", total=trials, item="")

        def cb(rec: dict) -> None:
            best = rec.get("best_value")
            progress.update(
                task, advance=1, item=f"#{rec['trial']} {rec['state']}" + (f", best {100 * best:.1f}" if best else "")
            )

        result = run_study(
            scenes, base, tcfg, features_fn=features_fn, progress=cb, evaluation_spec=evaluation_spec_for(dataset)
        )
    best_path = write_best_config(result, out / "best.toml")
    plots = save_plots(result.study, out / "plots")
    table = Table(title=f"Optuna study {study!r}: {result.n_trials} trials, {len(scenes)} scenes")
    table.add_column("parameter")
    table.add_column("best", justify="right")
    table.add_column("base", justify="right")
    for key, value in result.best_params.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value), str(getattr(base, key, "")))
    table.add_section()
    for key, value in result.best_metrics.items():
        table.add_row(f"{key} (class-agnostic)", fmt_pct(value), "")
    console.print(table)
    console.print(f"best config: {best_path}  (use: bench.py pseudo-labels --config {best_path})")
    for p in plots:
        console.print(f"plot: {p}")


def _tune_cv(cv, folds, scenes, base, tcfg, features_fn, spec, out: Path, dataset: str) -> None:
    from freepoint_bench.tuning.crossval import cross_validate, paired_gain, room_folds, write_cv_config

    if cv not in (None, "rooms"):
        raise ConfigError(f"--cv {cv!r}: the only cross-validation is by room (--cv rooms)")
    fold_list = room_folds([s.name for s in scenes], folds)
    with progress_bars() as progress:
        task = progress.add_task("cross-validate", total=len(fold_list), item="")

        def cb(rec: dict) -> None:
            progress.update(task, completed=rec["fold"], item="+".join(rec["held_out"]))

        result = cross_validate(
            scenes, base, tcfg, fold_list, evaluation_spec=spec, features_fn=features_fn, progress=cb
        )
    best_path = write_cv_config(result, out / "best.toml")
    metric = result.objective.upper()
    table = Table(title=f"held-out {metric} by fold on {dataset}: {len(fold_list)} folds of whole rooms")
    for col in ("fold", "held-out rooms", "scans", f"base {metric}", f"tuned {metric}", "tuned on training rooms"):
        table.add_column(col, justify="left" if col in ("held-out rooms", "tuned on training rooms") else "right")
    for i, (_, held) in enumerate(result.folds):
        params = result.fold_params[i] if result.fold_params else {}
        tuned = "-" if result.tuned is None else fmt_pct(result.tuned.per_fold[i])
        shown = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in params.items())
        table.add_row(str(i + 1), "+".join(result.rooms[i]), str(len(held)), fmt_pct(result.fixed.per_fold[i]),
                      tuned, shown)
    table.add_section()
    for name, fn in (("mean", "mean"), ("sd", "sd"), ("min", "min"), ("max", "max")):
        tuned = "-" if result.tuned is None else fmt_pct(getattr(result.tuned, fn))
        table.add_row(name, "", "", fmt_pct(getattr(result.fixed, fn)), tuned, "")
    pooled_tuned = "-" if result.tuned is None else fmt_pct(result.tuned.pooled[result.objective])
    table.add_row("pooled", "all scans", str(len(scenes)), fmt_pct(result.fixed.pooled[result.objective]),
                  pooled_tuned, "")
    console.print(table)
    gain = ""
    if result.tuned is not None:
        mean, se = paired_gain(result.fixed, result.tuned)
        gain = f"; tuned - base {100 * mean:+.1f} ± {100 * se:.1f} (se over folds)"
    console.print(f"chosen: {result.chosen} (tuned only when it gains more than one se{gain}); config: {best_path}")
    console.print(f"({result.seconds_per_scene:.1f} s per scan; use: bench.py pseudo-labels --config {best_path})")
