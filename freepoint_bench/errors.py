"""User-facing errors: one type per kind of failure, each printed by the CLI as one line."""

from __future__ import annotations


class FreePointError(Exception):
    """Base class of every error a user can cause; the CLI prints it as one line and exits 2."""


class DataError(FreePointError):
    """Malformed, missing or inconsistent input data (names the file and the fix)."""


class ConfigError(FreePointError):
    """Invalid configuration values or config file."""


class CheckpointError(FreePointError):
    """A checkpoint that is missing, corrupt, or of another architecture/backend."""
