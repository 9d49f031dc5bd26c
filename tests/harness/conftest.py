"""Fixtures of the harness tests: a protocols folder made read-only (it stands in for the shipped one)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def _contents(folder: Path) -> dict[str, bytes]:
    """Returns {relative path: bytes} of every file under `folder`."""
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[dict[str, bytes]]:
    """Makes `folder` and its sub-folders read-only for the block; yields what it held (a test run as root can
    still write, so the test compares the contents after the block too)."""
    before = _contents(folder)
    dirs = [folder, *(d for d in folder.rglob("*") if d.is_dir())]
    for d in dirs:
        d.chmod(0o555)
    try:
        yield before
    finally:
        for d in dirs:
            d.chmod(0o755)


@pytest.fixture()
def contents() -> Callable[[Path], dict[str, bytes]]:
    """Returns a function giving {relative path: bytes} of every file under a folder."""
    return _contents


@pytest.fixture()
def read_only() -> Callable[[Path], contextlib.AbstractContextManager[dict[str, bytes]]]:
    """Returns a context manager making a folder read-only for its block and yielding its files' bytes."""
    return _read_only
