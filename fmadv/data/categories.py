"""Raw table values as category strings, the common currency of feature maps and labels.

Categories are compared as strings so that a feature map survives a JSON round trip
unchanged, whatever the column types were. Missing values (None, NaN, null, and the
empty string) are no category at all.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def category_str(value: Any) -> str:
    """Category string of one value.

    Integral floats print as integers: pandas turns an int column with missing values
    into floats, and its categories must still match the int ones ("5", not "5.0").
    """
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isfinite(v) and v.is_integer() and abs(v) < 2**53:
            return str(int(v))
        return repr(v)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def is_missing(value: Any) -> bool:
    """True for None, NaN, a null and the empty string."""
    # An empty string is how CSV files (read with dtype=str) spell a missing value.
    if value is None or (isinstance(value, str) and value == ""):
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False  # list-like values are never "missing" as a whole


def is_collection(value: Any) -> bool:
    """True for the containers an option may use to list several values."""
    return isinstance(value, (list, tuple, set, frozenset, np.ndarray))


def category_strings(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Category strings (object array) and a missing-value mask of a scalar column."""
    arr = np.asarray(values)
    n = arr.shape[0]
    if arr.dtype.kind in "iub":
        out = np.empty(n, dtype=object)
        out[:] = arr.astype(str).tolist()
        return out, np.zeros(n, dtype=bool)
    if arr.dtype.kind == "f":
        null = np.isnan(arr)
        out = np.empty(n, dtype=object)
        with np.errstate(invalid="ignore"):
            integral = ~null & np.isfinite(arr) & (arr == np.trunc(arr)) & (np.abs(arr) < 2**53)
        out[integral] = arr[integral].astype(np.int64).astype(str).tolist()
        other = ~null & ~integral
        out[other] = [repr(float(v)) for v in arr[other]]
        return out, null
    flat = arr.astype(object, copy=False)
    null = np.fromiter((is_missing(v) for v in flat), dtype=bool, count=n)
    out = np.empty(n, dtype=object)
    out[:] = ["" if m else category_str(v) for v, m in zip(flat, null, strict=True)]
    return out, null


def distinct_category_strings(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes of a column's rows and the category strings of its distinct values.

    Returns ``(codes, strings, missing)``: ``codes[i]`` indexes the distinct values
    (-1 where the row is None/NaN), ``strings``/``missing`` are what
    :func:`category_strings` makes of each distinct value. Converting the distinct
    values only, not every row, gives the same strings (the conversion is value by
    value) at a fraction of the cost.
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    strings, missing = category_strings(np.asarray(uniques))
    return codes, strings, missing
