"""Binary labels: every reader's raw labels become float32 -1.0 / +1.0 here.

One set of spellings is accepted everywhere (libFM files, tables, logs, arrays):
the number 1 in any spelling (``1``, ``+1``, ``1.0``, ``True``) is positive, the
numbers 0 and -1 (``0``, ``-1``, ``-1.0``, ``False``) are negative. Other label
schemes are mapped explicitly, by a ``threshold`` on numeric values or by naming the
``positive`` values; a mapping that puts every row in the same class is an error, since
nothing can be learned or measured (AUC) from one class.

Messages count rows from 1, as people do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmadv.data._io import row_place
from fmadv.data.categories import (
    category_str,
    distinct_category_strings,
    is_collection,
    is_missing,
)
from fmadv.errors import ConfigError, DataError

# Spellings of booleans as text (a CSV read as strings, str(True)).
_WORDS = {"True": 1.0, "False": 0.0}

# Distinct label values a one-class message shows when ``positive`` matched none or all.
_EXAMPLES = 5


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
    check_classes: bool = True,
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
        ``row(i)`` is the row number in the file (counted from 1) of value ``i``
        (default: ``i + 1``), for values read a chunk at a time.
    check_classes : bool
        With ``threshold`` or ``positive``, refuse labels that all come out the same
        class. Callers that see a file a chunk at a time pass False and check the
        whole file with :class:`LabelCounts`.

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
        A missing value, a non-numeric value with ``threshold``, a value that is not
        a binary label without either option, or (``check_classes``) a threshold or
        positive values that make every row the same class.
    """
    if threshold is not None and positive is not None:
        raise ConfigError("pass threshold or positive, not both")
    at = row or (lambda i: i + 1)
    subject = _subject(column)
    arr = np.asarray(values)

    def missing_at(i: int) -> DataError:
        return _missing_value(subject, at(i), path)

    if threshold is not None:
        try:
            numbers = np.asarray(arr, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"{subject} must be numeric to use threshold", path) from None
        bad = np.flatnonzero(~np.isfinite(numbers))
        if bad.size:
            raise missing_at(int(bad[0]))
        y = np.where(numbers >= threshold, 1.0, -1.0).astype(np.float32)
    elif positive is not None:
        codes, strings, null = distinct_category_strings(arr)
        missing = (codes < 0) | null[np.maximum(codes, 0)]
        if missing.any():
            raise missing_at(int(np.argmax(missing)))
        y = np.where(np.isin(strings, _positive_strings(positive)), 1.0, -1.0)
        y = y.astype(np.float32)[codes]
    else:
        return _binary_spellings(arr, subject, column, path, at)
    if check_classes:
        counts = LabelCounts()
        counts.add(arr, y, threshold)
        counts.check(threshold=threshold, positive=positive, column=column, path=path)
    return y


def _subject(column: str | None) -> str:
    return "labels" if column is None else f"label column {column!r}"


def _missing_value(subject: str, row: int, path: str | Path | None) -> DataError:
    return DataError(f"{subject} has a missing value in {row_place(row, path)}", path)


def _positive_strings(positive: Any) -> list[str]:
    return [category_str(p) for p in (positive if is_collection(positive) else [positive])]


def _binary_spellings(
    arr: np.ndarray,
    subject: str,
    column: str | None,
    path: str | Path | None,
    at: Callable[[int], int],
) -> np.ndarray:
    """Labels that must spell -1/+1 or 0/1 themselves."""
    y = label_signs(arr)
    bad = np.flatnonzero(np.isnan(y))
    if not bad.size:
        return y
    i = int(bad[0])
    if is_missing(arr[i]):
        raise _missing_value(subject, at(i), path)
    place = row_place(at(i), path)
    shown = repr(category_str(arr[i]))
    if column is None:
        raise DataError(f"labels must be -1/+1 or 0/1; {place} has {shown}", path)
    raise DataError(
        f"{subject} has {shown} in {place}; expected -1/+1 or 0/1. To make labels of "
        "numeric ratings, give a threshold (Python: threshold=4; CLI: --threshold 4 "
        "makes ratings >= 4 positive); from Python, positive= can also name the values "
        "meaning +1",
        path,
    )


@dataclass
class LabelCounts:
    """What a threshold or positive values made of a label column, added up chunk by
    chunk, so that a one-class result is caught for the file as a whole."""

    rows: int = 0
    positives: int = 0
    #: Range of the raw values (with a threshold).
    low: float = np.inf
    high: float = -np.inf
    #: A few distinct raw values (with positive values), to show in the message.
    examples: list[str] = field(default_factory=list)

    def add(self, raw: np.ndarray, y: np.ndarray, threshold: float | None) -> None:
        """Count one chunk: its raw values and the labels made of them."""
        self.rows += int(y.size)
        self.positives += int(np.count_nonzero(y > 0))
        if not y.size:
            return
        if threshold is not None:
            numbers = np.asarray(raw, dtype=np.float64)
            self.low = min(self.low, float(numbers.min()))
            self.high = max(self.high, float(numbers.max()))
        elif len(self.examples) < _EXAMPLES:
            _, strings, _ = distinct_category_strings(np.asarray(raw))
            new = [v for v in strings.tolist() if v not in self.examples]
            self.examples += new[: _EXAMPLES - len(self.examples)]

    def check(
        self,
        *,
        threshold: float | None,
        positive: Any,
        column: str | None,
        path: str | Path | None,
    ) -> None:
        """Raise :class:`DataError` when every row counted is the same class."""
        if 0 < self.positives < self.rows or not self.rows:
            return
        sign = "+1" if self.positives else "-1"
        values = "the labels" if column is None else f"the values of label column {column!r}"
        if threshold is not None:
            rule = f"threshold {threshold:g}"
            if self.low == self.high:
                why = f"{values} are all {self.low:g}, so no threshold gives both classes"
            else:
                why = (
                    f"{values} range {self.low:g}..{self.high:g}; a threshold above "
                    f"{self.low:g} and at most {self.high:g} (Python: threshold=; CLI: "
                    "--threshold) gives both classes"
                )
        else:
            rule = f"positive={positive!r}"
            why = (
                f"{'all' if self.positives else 'none'} of {values} are among them (they "
                f"include {', '.join(map(repr, self.examples))}); naming some but not all "
                "of them gives both classes"
            )
        raise DataError(
            f"{rule} makes every one of the {self.rows:,} rows {sign}: {why}, which "
            "training and AUC need",
            path,
        )
