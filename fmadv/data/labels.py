"""Binary labels: every reader's raw labels become float32 -1.0 / +1.0 here.

One set of spellings is accepted everywhere (libFM files, tables, logs, arrays):
the number 1 in any spelling (``1``, ``+1``, ``1.0``, ``True``) is positive, the
numbers 0 and -1 (``0``, ``-1``, ``-1.0``, ``False``) are negative. Other label
schemes are mapped explicitly, by a ``threshold`` on numeric values or by naming the
``positive`` values.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmadv.data.categories import (
    category_str,
    distinct_category_strings,
    is_collection,
    is_missing,
)
from fmadv.errors import ConfigError, DataError

# Spellings of booleans as text (a CSV read as strings, str(True)).
_WORDS = {"True": 1.0, "False": 0.0}


def _sign(value: Any) -> float:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        value = _WORDS.get(value, value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return np.nan
    if number == 1:
        return 1.0
    return -1.0 if number in (0.0, -1.0) else np.nan


def label_signs(values: Any) -> np.ndarray:
    """+1.0 / -1.0 for each value that spells a binary label, NaN for any other value.

    The primitive under :func:`binary_labels`, for readers that collect every error
    of a file before reporting the first one.

    Parameters
    ----------
    values : array-like
        Numbers, booleans, strings or bytes; a 1-D array or anything
        :func:`numpy.asarray` turns into one.

    Returns
    -------
    numpy.ndarray
        float32, one entry per value.
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "biuf":
        number = arr.astype(np.float64)
        signs = np.where(number == 1, 1.0, np.where((number == 0) | (number == -1), -1.0, np.nan))
        return signs.astype(np.float32)
    # Text and mixed columns: convert each distinct value once. A missing value gets
    # code -1, which picks the NaN appended to the table.
    codes, uniques = pd.factorize(arr.astype(object), use_na_sentinel=True)
    table = np.array([*map(_sign, uniques), np.nan], dtype=np.float32)
    return table[codes]


def binary_labels(
    values: Any,
    *,
    threshold: float | None = None,
    positive: Any = None,
    column: str | None = None,
    path: str | Path | None = None,
    row: Callable[[int], int] | None = None,
) -> np.ndarray:
    """Raw labels as float32 -1.0 / +1.0, or a :class:`DataError` naming the first bad one.

    Parameters
    ----------
    values : array-like
        One raw label per row.
    threshold : float, optional
        Numeric labels: +1 when ``value >= threshold``, else -1.
    positive : scalar or collection, optional
        Value(s) meaning +1, compared as category strings (``4`` matches ``4.0`` and
        ``"4"``); every other value means -1.
    column : str, optional
        Name of the label column the values come from, for messages.
    path : str or Path, optional
        File the values come from; messages start with it.
    row : callable, optional
        ``row(i)`` is the row number in the file of value ``i`` (default: ``i``), for
        values read a chunk at a time.

    Returns
    -------
    numpy.ndarray
        float32, each -1.0 or +1.0. Without ``threshold`` or ``positive`` the values
        must spell binary labels (see the module docstring).

    Raises
    ------
    ConfigError
        Both ``threshold`` and ``positive``.
    DataError
        A missing value, a non-numeric value with ``threshold``, or a value that is not
        a binary label without either option.
    """
    if threshold is not None and positive is not None:
        raise ConfigError("pass threshold or positive, not both")
    at = row or (lambda i: i)
    subject = "labels" if column is None else f"label column {column!r}"
    arr = np.asarray(values)

    def missing_at(i: int) -> DataError:
        return DataError(f"{subject} has a missing value in row {at(i)}", path)

    if threshold is not None:
        try:
            numbers = np.asarray(arr, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"{subject} must be numeric to use threshold", path) from None
        bad = np.flatnonzero(~np.isfinite(numbers))
        if bad.size:
            raise missing_at(int(bad[0]))
        return np.where(numbers >= threshold, 1.0, -1.0).astype(np.float32)

    if positive is not None:
        codes, strings, null = distinct_category_strings(arr)
        missing = (codes < 0) | null[np.maximum(codes, 0)]
        if missing.any():
            raise missing_at(int(np.argmax(missing)))
        wanted = [category_str(p) for p in (positive if is_collection(positive) else [positive])]
        return np.where(np.isin(strings, wanted), 1.0, -1.0).astype(np.float32)[codes]

    y = label_signs(arr)
    bad = np.flatnonzero(np.isnan(y))
    if bad.size:
        i = int(bad[0])
        if is_missing(arr[i]):
            raise missing_at(i)
        shown = repr(category_str(arr[i]))
        if column is None:
            raise DataError(f"labels must be -1/+1 or 0/1; row {at(i)} has {shown}", path)
        raise DataError(
            f"{subject} has {shown} in row {at(i)}; expected -1/+1 or 0/1 "
            "(pass threshold= or positive= to map other labels)",
            path,
        )
    return y
