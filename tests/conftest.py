"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest


@pytest.fixture
def bench_cli(capsys):
    """Returns a function running `bench.py args` in process and giving (exit code, stdout, stderr), each with
    whitespace runs collapsed (rich wraps to the narrow captured terminal)."""
    from freepoint_bench.cli import main

    def run(*args) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exc:
            main([str(a) for a in args])
        out = capsys.readouterr()
        return int(exc.value.code or 0), " ".join(out.out.split()), " ".join(out.err.split())

    return run
