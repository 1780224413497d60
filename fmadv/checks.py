"""Checks of the numbers a user gives, with one wording everywhere.

Each returns the value in its plain Python type, or raises :class:`ConfigError` naming
the setting, what it must be, and what was given.
"""

from __future__ import annotations

import math
import os
from numbers import Integral, Real
from typing import Any

from fmadv.errors import ConfigError


def integer(name: str, value: Any, low: int = 0) -> int:
    """An integer >= ``low`` (a bool is not one; an integral float such as 3.0 is)."""
    is_integral = isinstance(value, Integral) or (isinstance(value, Real) and value == int(value))
    if isinstance(value, bool) or not is_integral or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def env_integer(name: str, default: int, low: int = 1) -> int:
    """The integer >= ``low`` in environment variable ``name`` (blank or unset:
    ``default``)."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return integer(name, int(text), low)
    except ValueError:
        raise ConfigError(f"{name} must be an integer >= {low}, got {text!r}") from None


def nonnegative(name: str, value: Any) -> float:
    """A finite number >= 0."""
    if not _finite(value) or value < 0:
        raise ConfigError(f"{name} must be >= 0 (a finite number), got {value!r}")
    return float(value)


def positive(name: str, value: Any) -> float:
    """A finite number > 0."""
    if not _finite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _finite(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
