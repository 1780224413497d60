"""Named categorical fields laid out in one shared 0-based feature index space.

A :class:`FeatureMap` turns table columns (pandas or polars) into the sparse binary
rows an FM consumes: one-hot for single-valued fields, multi-hot for multi-valued
fields (python lists, or strings joined by a separator such as ``"Action|Comedy"``).

Categories are stored as strings so a map survives a JSON round trip unchanged,
whatever the column types were. Missing values (None, NaN, null, and the empty
string) activate no feature. That is how a multi-valued field says "none of these"
(a film without genres), and how a single-valued field fitted on a column with gaps
says "unknown"; in any other single-valued field an empty cell is an error, since the
row would silently be scored from its other fields.

Messages count rows from 1, as people do.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fmadv.data._io import row_place
from fmadv.data.categories import category_str, category_strings, is_missing
from fmadv.data.dataset import Dataset
from fmadv.data.labels import binary_labels
from fmadv.errors import ConfigError, DataError

_FORMAT = "fmadv.feature_map"
_VERSION = 1


@dataclass(frozen=True)
class Field:
    """One named block of features.

    Parameters
    ----------
    name : str
        Field name, e.g. ``"user"``.
    categories : tuple of str
        The field's values; category ``j`` is feature ``offset + j``.
    offset : int
        Index of the field's first feature in the shared index space.
    multi : bool
        True when a row may activate several categories (e.g. genres).
    separator : str
        Separator of a multi-valued field given as one string per row.
    optional : bool
        Single-valued fields: True when a row may leave the field empty (it then
        activates none of its features). :meth:`FeatureMap.fit` sets it when the
        column it learns from has missing values. A multi-valued cell may always be
        empty.
    """

    name: str
    categories: tuple[str, ...]
    offset: int
    multi: bool = False
    separator: str = "|"
    optional: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", tuple(str(c) for c in self.categories))
        if not self.name:
            raise ConfigError("field name must not be empty")
        if len(set(self.categories)) != len(self.categories):
            dup = next(c for c, n in _counts(self.categories).items() if n > 1)
            raise ConfigError(f"field {self.name!r} lists category {dup!r} twice")
        if self.offset < 0:
            raise ConfigError(f"field {self.name!r} has a negative offset {self.offset}")
        if self.multi and not self.separator:
            raise ConfigError(f"multi-valued field {self.name!r} needs a non-empty separator")

    @property
    def size(self) -> int:
        """Number of categories."""
        return len(self.categories)

    @property
    def slice(self) -> slice:
        """The field's columns in the shared index space."""
        return slice(self.offset, self.offset + self.size)


def _counts(values: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


class FeatureMap:
    """Ordered fields sharing one 0-based feature index space.

    Parameters
    ----------
    fields : sequence of Field
        Fields in order; their offsets must tile ``[0, n_features)`` without gaps.
        :meth:`from_categories` and :meth:`fit` compute the offsets for you.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"user": [1, 2], "genre": ["Action|Comedy", "Drama"]})
    >>> fmap = FeatureMap.fit(frame, ["user", "genre"], multi={"genre": "|"})
    >>> fmap.n_features, fmap.feature_name(3)
    (5, 'genre=Comedy')
    >>> fmap.encode(frame).toarray().astype(int).tolist()
    [[1, 0, 1, 1, 0], [0, 1, 0, 0, 1]]
    """

    def __init__(self, fields: Sequence[Field]):
        self._fields = tuple(fields)
        offset = 0
        for f in self._fields:
            if not isinstance(f, Field):
                raise ConfigError(f"expected Field objects, got {type(f).__name__}")
            if f.offset != offset:
                raise ConfigError(
                    f"field {f.name!r} starts at {f.offset}, expected {offset} "
                    "(fields must tile the index space in order)"
                )
            offset += f.size
        self._n_features = offset
        self._by_name = {f.name: f for f in self._fields}
        if len(self._by_name) != len(self._fields):
            raise ConfigError("field names must be unique")
        self._starts = [f.offset for f in self._fields]
        self._lookups: dict[str, pd.Index] = {}

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_categories(
        cls,
        categories: Mapping[str, Sequence[Any]],
        multi: Mapping[str, str] | None = None,
        optional: Collection[str] = (),
    ) -> FeatureMap:
        """Build a map from ``{field: categories}`` in order, computing the offsets.

        ``multi`` maps each multi-valued field to its separator; ``optional`` names the
        single-valued fields a row may leave empty (see :attr:`Field.optional`).
        """
        multi = dict(multi or {})
        for option, names in (("multi", multi), ("optional", optional)):
            unknown = sorted(set(names) - set(categories))
            if unknown:
                raise ConfigError(f"{option} names fields that are not in the map: {unknown}")
        fields = []
        offset = 0
        for name, cats in categories.items():
            strs = tuple(category_str(c) for c in cats)
            f = Field(name, strs, offset, name in multi, multi.get(name, "|"), name in optional)
            fields.append(f)
            offset += f.size
        return cls(fields)

    @classmethod
    def fit(
        cls, frame: Any, fields: Sequence[str], multi: Mapping[str, str] | None = None
    ) -> FeatureMap:
        """Learn each field's categories from a pandas or polars DataFrame.

        Parameters
        ----------
        frame : pandas.DataFrame or polars.DataFrame
            Table with one column per field.
        fields : list of str
            Columns to use, in the order of the feature space.
        multi : dict of str to str, optional
            Multi-valued columns and their separator (used when a cell is a string;
            cells may also be lists).

        Returns
        -------
        FeatureMap
            Categories sorted numerically when they all read as numbers, else as text.
            A single-valued column with missing values makes an optional field.
        """
        fields = list(fields)
        if len(set(fields)) != len(fields):
            raise ConfigError(f"fields must be unique, got {fields}")
        multi = dict(multi or {})
        unknown = sorted(set(multi) - set(fields))
        if unknown:
            raise ConfigError(f"multi names columns that are not in fields: {unknown}")
        categories: dict[str, tuple[str, ...]] = {}
        optional = []
        for name in fields:
            if name in multi:
                lists = _multi_strings(_list_column(frame, name), multi[name])
                seen = set(itertools.chain.from_iterable(lists))
            else:
                strs, null = category_strings(_scalar_column(frame, name))
                seen = set(strs[~null].tolist())
                if null.any():
                    optional.append(name)
            categories[name] = _sort_categories(seen)
        return cls.from_categories(categories, multi, optional)

    # -- lookup -------------------------------------------------------------------------

    @property
    def fields(self) -> tuple[Field, ...]:
        """The fields in index order."""
        return self._fields

    @property
    def field_names(self) -> list[str]:
        """Field names in index order."""
        return [f.name for f in self._fields]

    @property
    def n_features(self) -> int:
        """Size of the shared index space."""
        return self._n_features

    def field(self, name: str) -> Field:
        """The field called ``name``."""
        try:
            return self._by_name[name]
        except KeyError:
            raise ConfigError(
                f"unknown field {name!r}; fields are: {', '.join(self.field_names)}"
            ) from None

    def field_slice(self, name: str) -> slice:
        """Columns of field ``name``."""
        return self.field(name).slice

    def index(self, field: str, value: Any) -> int:
        """Feature index of ``value`` in ``field``."""
        f = self.field(field)
        pos = self._lookup(f).get_indexer([category_str(value)])[0]
        if pos < 0:
            raise DataError(f"unknown category {category_str(value)!r} in field {field!r}")
        return f.offset + int(pos)

    def field_at(self, idx: int) -> Field:
        """The field that owns feature ``idx``."""
        idx = int(idx)
        if not 0 <= idx < self._n_features:
            raise ConfigError(f"feature index {idx} is outside [0, {self._n_features})")
        return self._fields[bisect.bisect_right(self._starts, idx) - 1]

    def feature_name(self, idx: int) -> str:
        """``"field=value"`` for feature ``idx``."""
        f = self.field_at(idx)
        return f"{f.name}={f.categories[int(idx) - f.offset]}"

    def _lookup(self, f: Field) -> pd.Index:
        # pandas' hash index maps a whole column of strings to positions in one call.
        index = self._lookups.get(f.name)
        if index is None:
            index = pd.Index(np.array(f.categories, dtype=object), dtype=object)
            self._lookups[f.name] = index
        return index

    # -- encoding -----------------------------------------------------------------------

    def encode(
        self,
        frame: Any,
        unknown: str = "error",
        fields: Sequence[str] | None = None,
        path: str | Path | None = None,
    ) -> sp.csr_matrix:
        """Encode table rows as a float32 CSR matrix of 0/1 values.

        Parameters
        ----------
        frame : pandas.DataFrame or polars.DataFrame
            One column per encoded field.
        unknown : {"error", "ignore"}
            A category not seen by :meth:`fit` raises :class:`DataError` naming the
            field, value and row, or is dropped (its row keeps its other features).
        fields : list of str, optional
            Encode only these fields; the others' columns stay empty. Default: all.
        path : str or Path, optional
            File the frame was read from; messages start with it (and give a CSV
            row's line too).

        Returns
        -------
        scipy.sparse.csr_matrix
            Shape ``(len(frame), n_features)``, canonical, every stored value 1.

        Raises
        ------
        DataError
            A missing column, an unknown category (``unknown="error"``), or an empty
            cell in a single-valued field that is not :attr:`~Field.optional`.
        """
        if unknown not in ("error", "ignore"):
            raise ConfigError(f"unknown must be 'error' or 'ignore', got {unknown!r}")
        names = self.field_names if fields is None else list(fields)
        n = _height(frame)
        all_rows: list[np.ndarray] = []
        all_cols: list[np.ndarray] = []
        for name in names:
            f = self.field(name)
            if f.multi:
                lists = _multi_strings(_list_column(frame, name), f.separator)
                lengths = np.fromiter(map(len, lists), dtype=np.int64, count=n)
                values = np.empty(int(lengths.sum()), dtype=object)
                values[:] = list(itertools.chain.from_iterable(lists))
                rows = np.repeat(np.arange(n, dtype=np.int64), lengths)
            else:
                strs, null = category_strings(_scalar_column(frame, name))
                if null.any() and not f.optional:
                    raise empty_cell_error(f, int(np.argmax(null)) + 1, path)
                rows = np.flatnonzero(~null)
                values = strs[rows]
            codes = self._lookup(f).get_indexer(values) if values.size else np.empty(0, np.int64)
            bad = codes < 0
            if bad.any():
                if unknown == "error":
                    i = int(np.argmax(bad))
                    raise unknown_category_error(f, values[i], int(rows[i]) + 1, path)
                rows, codes = rows[~bad], codes[~bad]
            all_rows.append(rows)
            all_cols.append(codes.astype(np.int64) + f.offset)
        row = np.concatenate(all_rows) if all_rows else np.empty(0, np.int64)
        col = np.concatenate(all_cols) if all_cols else np.empty(0, np.int64)
        X = sp.csr_matrix(
            (np.ones(row.size, dtype=np.float32), (row, col)),
            shape=(n, self._n_features),
            dtype=np.float32,
        )
        X.sum_duplicates()
        # A value listed twice in one multi-valued cell is still one active feature.
        X.data[:] = 1.0
        return X

    # -- persistence --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description; :meth:`from_dict` restores an equal map."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "fields": [
                {
                    "name": f.name,
                    "categories": list(f.categories),
                    "offset": f.offset,
                    "multi": f.multi,
                    "separator": f.separator,
                    "optional": f.optional,
                }
                for f in self._fields
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureMap:
        """Rebuild a map written by :meth:`to_dict`."""
        if not isinstance(data, Mapping) or data.get("format") != _FORMAT:
            raise DataError(f"not a feature map (expected a dict with format={_FORMAT!r})")
        if data.get("version") != _VERSION:
            raise DataError(
                f"unsupported feature map version {data.get('version')!r} (expected {_VERSION})"
            )
        try:
            fields = [
                Field(
                    name=str(d["name"]),
                    categories=tuple(d["categories"]),
                    offset=int(d["offset"]),
                    multi=bool(d.get("multi", False)),
                    separator=str(d.get("separator", "|")),
                    optional=bool(d.get("optional", False)),
                )
                for d in data["fields"]
            ]
            return cls(fields)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"invalid feature map: {exc}") from exc

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FeatureMap):
            return NotImplemented
        return self._fields == other._fields

    __hash__ = None  # type: ignore[assignment]  # mutable-looking; equality is by value

    def __repr__(self) -> str:
        parts = ", ".join(f"{f.name}:{f.size}" for f in self._fields)
        return f"FeatureMap(n_features={self._n_features}, fields=[{parts}])"


# -- cells a map cannot encode ----------------------------------------------------------


def unknown_category_error(
    field: Field, value: str, row: int, path: str | Path | None
) -> DataError:
    """The error for a category ``field`` does not know, in ``row`` (counted from 1)."""
    return DataError(
        f"{row_place(row, path)}: unknown category {value!r} of field {field.name!r}; the "
        f"model has never seen it (the feature map knows {field.size} categories of "
        f"{field.name!r}): correct or remove the row, or, from Python, pass "
        "unknown='ignore' to encode the row without it",
        path,
    )


def empty_cell_error(field: Field, row: int, path: str | Path | None) -> DataError:
    """The error for an empty cell of a single-valued field that is not optional."""
    return DataError(
        f"{row_place(row, path)}: empty cell in column {field.name!r}; the feature map "
        f"was fitted with a value of {field.name!r} in every row, so the row cannot be "
        "encoded (it would be scored from its other fields alone): fill in the cell or "
        "remove the row",
        path,
    )


# -- frame access (pandas or polars, without importing polars unless it is in use) --------


def _frame_kind(frame: Any) -> str:
    root = type(frame).__module__.split(".")[0]
    if root in ("pandas", "polars") and hasattr(frame, "columns"):
        return root
    raise TypeError(f"expected a pandas or polars DataFrame, got {type(frame).__name__}")


def _height(frame: Any) -> int:
    _frame_kind(frame)
    return len(frame)


def _check_column(frame: Any, name: str) -> str:
    kind = _frame_kind(frame)
    if name not in list(frame.columns):
        cols = ", ".join(map(str, frame.columns))
        raise DataError(f"missing column {name!r} (columns are: {cols})")
    return kind


def _scalar_column(frame: Any, name: str) -> np.ndarray:
    if _check_column(frame, name) == "polars":
        return frame.get_column(name).to_numpy()
    return frame[name].to_numpy()


def _list_column(frame: Any, name: str) -> list[Any]:
    if _check_column(frame, name) == "polars":
        return frame.get_column(name).to_list()
    return frame[name].tolist()


# -- value -> category string ------------------------------------------------------------


def _multi_strings(cells: list[Any], separator: str) -> list[list[str]]:
    """Category strings of each cell of a multi-valued column."""
    out: list[list[str]] = []
    for cell in cells:
        if isinstance(cell, str):
            out.append([p for p in cell.split(separator) if p])
        elif isinstance(cell, (list, tuple, np.ndarray)) or type(cell).__name__ == "Series":
            out.append([category_str(v) for v in cell if not is_missing(v)])
        elif is_missing(cell):
            out.append([])
        else:
            out.append([category_str(cell)])
    return out


def _sort_categories(values: Collection[str]) -> tuple[str, ...]:
    """Numeric order when every category reads as a finite number, else text order."""
    try:
        keys = {v: float(v) for v in values}
    except ValueError:
        return tuple(sorted(values))
    if all(math.isfinite(k) for k in keys.values()):
        return tuple(sorted(values, key=lambda v: (keys[v], v)))
    return tuple(sorted(values))


# -- frames -> Dataset -------------------------------------------------------------------


def frame_to_dataset(
    frame: Any,
    label: str,
    fields: Sequence[str],
    *,
    multi: Mapping[str, str] | None = None,
    feature_map: FeatureMap | None = None,
    threshold: float | None = None,
    positive: Any = None,
    unknown: str = "error",
    user_col: str | None = None,
    item_col: str | None = None,
    name: str = "",
) -> Dataset:
    """Turn a pandas or polars table into a :class:`Dataset`.

    Parameters
    ----------
    frame : pandas.DataFrame or polars.DataFrame
        One row per example.
    label : str
        Label column, read by :func:`~fmadv.data.labels.binary_labels`: without
        ``threshold`` or ``positive`` it must hold -1/+1 or 0/1 (or booleans).
    fields : list of str
        Feature columns, in order.
    multi : dict of str to str, optional
        Multi-valued feature columns and their separators (see :meth:`FeatureMap.fit`).
    feature_map : FeatureMap, optional
        Reuse an existing map (e.g. the training set's) instead of fitting one.
    threshold : float, optional
        Numeric labels: +1 when ``label >= threshold``, else -1. The raw values are
        kept in ``Dataset.ratings``.
    positive : scalar or collection, optional
        Label value(s) that mean +1; every other value means -1.
    unknown : {"error", "ignore"}
        What to do with categories the given ``feature_map`` does not know.
    user_col, item_col : str, optional
        Integer columns to copy into ``user_ids`` / ``item_ids``.
    name : str
        Dataset name.
    """
    raw = _scalar_column(frame, label)
    y = binary_labels(raw, threshold=threshold, positive=positive, column=label)
    ratings = None if threshold is None else np.asarray(raw, dtype=np.float64).astype(np.float32)
    if feature_map is None:
        feature_map = FeatureMap.fit(frame, fields, multi)
    X = feature_map.encode(frame, unknown=unknown, fields=fields)
    ids = {}
    for key, col in (("user_ids", user_col), ("item_ids", item_col)):
        if col is not None:
            try:
                ids[key] = np.asarray(_scalar_column(frame, col), dtype=np.int64)
            except (TypeError, ValueError):
                raise DataError(f"column {col!r} must hold integer ids") from None
    return Dataset(X=X, y=y, feature_map=feature_map, name=name, ratings=ratings, **ids)
