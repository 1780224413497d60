"""User-facing errors.

Everything a user can cause (a bad file, a bad option, a checksum mismatch) raises a
subclass of :class:`FmadvError`. The CLI turns these into a one-line message and a
non-zero exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class FmadvError(Exception):
    """Base class of the errors a user can cause and fix."""


class DataError(FmadvError, ValueError):
    """Malformed or unexpected input data, located by file and line where known."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        super().__init__(where + message)


class ChecksumError(FmadvError):
    """A downloaded or local file does not match the checksum of its dataset card."""


class ModelFileError(FmadvError):
    """A model file that is missing, truncated, or not written by fmadv."""


class ConfigError(FmadvError, ValueError):
    """An option or hyperparameter outside its valid range."""
