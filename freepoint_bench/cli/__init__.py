"""The `bench.py` commands: parse, call the library, print; one module per command group. This module assembles
the app and runs it (`main`: a user error is one line and exit status 2)."""

from __future__ import annotations

import errno
import logging
import sys
import warnings
from typing import Annotated

import typer
from rich.logging import RichHandler
from rich.markup import escape

from freepoint_bench import parallel
from freepoint_bench.cli import checkpoints, data, evaluate, pretrain, protocols, pseudo_labels, report, run, tune
from freepoint_bench.cli.common import DatasetOpt, console, err_console
from freepoint_bench.errors import FreePointError

__all__ = ["DatasetOpt", "app", "console", "err_console", "main"]

app = typer.Typer(
    name="bench.py",
    help="freepoint-bench: label-free 3D instance segmentation pretraining (FreePoint) and its benchmark.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# registered in the order `bench.py --help` lists them
app.add_typer(data.app, name="data")
app.command("evaluate")(evaluate.evaluate_cmd)
app.command("pseudo-labels")(pseudo_labels.pseudo_labels_cmd)
app.command("pretrain")(pretrain.pretrain_cmd)
app.command("predict")(evaluate.predict_cmd)
app.command("tune")(tune.tune_cmd)
app.add_typer(protocols.app, name="protocols")
app.command("finetune", context_settings={"allow_extra_args": True})(run.finetune_cmd)
app.command("run", context_settings={"allow_extra_args": True})(run.run_cmd)
app.command("report")(report.report_cmd)
app.add_typer(checkpoints.app, name="checkpoints")


@app.callback()
def _options(
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            min=1,
            help="Threads of torch, OpenMP and BLAS in this process (default: the libraries' own, one per core; "
            "process pools give each worker its share of the cores). On a shared or small machine 1 can be several "
            "times faster.",
        ),
    ] = None,
) -> None:
    """freepoint-bench: label-free 3D instance segmentation pretraining (FreePoint) and its benchmark."""
    if threads is not None:
        parallel.limit_threads(threads)


def _quiet_lightning(record: logging.LogRecord) -> bool:
    """Returns False for Lightning's records below WARNING."""
    lightning = record.name.split(".")[0] in ("lightning", "pytorch_lightning", "lightning_fabric")
    return not lightning or record.levelno >= logging.WARNING


def main(argv: list[str] | None = None) -> None:
    """Runs the CLI; user errors print one line and exit with status 2."""
    handler = RichHandler(console=err_console, show_path=False, show_time=False)
    # Lightning logs its own INFO banners (tips, device summaries): keep the terminal for our progress bars.
    # A filter on the handler, because importing pytorch_lightning (lazily, inside commands) resets its
    # loggers' levels to INFO.
    handler.addFilter(_quiet_lightning)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[handler])
    # torch's MultiheadAttention asks is_fx_tracing() and torch then logs an advice for tracer authors, once
    logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    try:
        app(args=argv, prog_name="bench.py")  # usage errors: typer prints them and exits 2
    except FreePointError as e:
        # escaped: rich would take a message's "[trackers]" (pip install 'freepoint-bench[trackers]') for markup
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except OSError as e:  # a write outside atomic.py (e.g. Lightning's checkpoints) on a full or read-only disk
        if e.errno not in _WRITE_ERRNOS:
            raise
        err_console.print(f"[bold red]error:[/] {e.filename or 'output'}: cannot write it ({e.strerror}); free disk "
                          "space or point the output at a writable folder", highlight=False, soft_wrap=True)
        sys.exit(2)


_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EFBIG}
