"""Seeded row splits shared by the loaders.

Index arrays come back sorted, so every split keeps the row order of its source file;
training loops shuffle on their own.
"""

from __future__ import annotations

import numpy as np

from fmadv.data.dataset import Dataset, Splits
from fmadv.errors import ConfigError


def check_fraction(name: str, value: float, *, allow_zero: bool) -> float:
    """Validate a split fraction: in (0, 1), or [0, 1) when ``allow_zero``."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in (0, 1), got {value!r}") from None
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value < 1):
        interval = "[0, 1)" if allow_zero else "(0, 1)"
        raise ConfigError(f"{name} must be in {interval}, got {value}")
    return value


def share(n: int, fraction: float) -> int:
    """Round ``fraction * n`` half up (``round`` would round half to even)."""
    return int(np.floor(fraction * n + 0.5))


def carve(
    indices: np.ndarray, fraction: float, seed: int | np.random.Generator, what: str = "valid_size"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Take a seeded random ``fraction`` of ``indices`` out; return ``(rest, taken)``.

    ``taken`` is None when ``fraction`` is 0. Both keep the order of ``indices``.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if fraction == 0:
        return indices, None
    n_take = share(len(indices), fraction)
    if n_take == 0 or n_take >= len(indices):
        raise ConfigError(
            f"{what}={fraction} takes {n_take} of {len(indices)} rows; "
            "it must leave at least one row on each side"
        )
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(indices), dtype=bool)
    mask[rng.permutation(len(indices))[:n_take]] = True
    return indices[~mask], indices[mask]


def random_split(
    n_rows: int, test_size: float, valid_size: float, seed: int
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Seeded shuffle split: ``test_size`` of the rows, then ``valid_size`` of the rest."""
    test_size = check_fraction("test_size", test_size, allow_zero=False)
    valid_size = check_fraction("valid_size", valid_size, allow_zero=True)
    rng = np.random.default_rng(seed)
    rest, test = carve(np.arange(n_rows), test_size, rng, "test_size")
    train, valid = carve(rest, valid_size, rng)
    assert test is not None
    return train, valid, test


def split_dataset(
    data: Dataset, train: np.ndarray, valid: np.ndarray | None, test: np.ndarray
) -> Splits:
    """Cut one dataset into :class:`Splits` by row indices."""
    return Splits(
        train=data.subset(train),
        valid=None if valid is None else data.subset(valid),
        test=data.subset(test),
    )
