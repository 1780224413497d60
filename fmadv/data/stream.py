"""Interaction logs too large for memory, read lazily and streamed as CSR batches.

A log is a Parquet or CSV file with one row per interaction (user, item, side fields,
a rating or a label). Three pieces turn it into training batches without ever holding
the whole log:

- :func:`stream_feature_map` finds the distinct values of every field in one streaming
  pass of the polars engine and returns the same :class:`FeatureMap` that
  :meth:`FeatureMap.fit` would learn from the whole table (save it with the model: a
  later log is encoded against it).
- :class:`StreamingLog` reads the log chunk by chunk (pyarrow for Parquet, the polars
  streaming engine for CSV), encodes each chunk to float32 CSR rows with labels in
  {-1, +1}, and serves mini-batches, optionally through a seeded shuffle buffer.
  :meth:`StreamingLog.batch_source` plugs it into :func:`fmadv.training.loop.fit_loop`.
- :func:`~fmadv.data.synthetic.write_synthetic_log` writes a
  planted-FM log of any size in bounded memory, for tests and for the memory benchmark.

Memory is bounded by the chunk size, the shuffle buffer and the size of the feature
map, not by the number of rows in the log.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp
import torch

from fmadv.checks import integer
from fmadv.data.categories import category_str, distinct_category_strings
from fmadv.data.features import FeatureMap, Field, empty_cell_error, unknown_category_error
from fmadv.data.labels import LabelCounts, binary_labels
from fmadv.errors import ConfigError, DataError
from fmadv.sparse import SparseBatch

__all__ = [
    "SUFFIXES",
    "LogChunk",
    "StreamingLog",
    "scan_log",
    "stream_feature_map",
]

SUFFIXES = (".parquet", ".csv")

# CSV column types are inferred from this many leading rows. Polars' default (100) lets a
# column that looks numeric at the top fail half-way through a long log; a scan that
# reads further costs one larger read at open time.
_CSV_INFER_ROWS = 10_000

# Bytes read from a Parquet file at a time. Together with pre_buffer=False this makes
# pyarrow decode a row group page by page: with its default (pre_buffer=True) every
# column chunk of a row group is fetched whole and, measured on pyarrow 26,
# ``iter_batches`` memory then grows with the number of row groups read.
_PARQUET_BUFFER = 1 << 20

_READ_ERRORS = (pl.exceptions.PolarsError, pa.ArrowException, OSError)

# Rows per chunk of the CSV feature-map pass. Larger chunks are not faster (the engine
# parses in its own morsels) but hold more memory: 1M rows measured about 100 MiB more.
_CSV_MAP_ROWS = 262_144

_NO_FEATURE = -2  # code of a missing value (activates nothing), beside -1 = unknown


# -- opening a log ---------------------------------------------------------------------


def _log_path(path: str | Path) -> Path:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(
            f"unsupported log format {path.suffix or '(no suffix)'!r}; "
            f"expected one of {', '.join(SUFFIXES)}",
            path,
        )
    if not path.exists():
        raise DataError("no such file", path)
    if not path.is_file():
        raise DataError("not a file", path)
    return path


def scan_log(path: str | Path) -> pl.LazyFrame:
    """Open an interaction log lazily: nothing is read until a query runs.

    Parameters
    ----------
    path : str or Path
        A ``.parquet`` or ``.csv`` file (CSV with a header row).

    Returns
    -------
    polars.LazyFrame
        ``pl.scan_parquet`` / ``pl.scan_csv`` of the file.

    Raises
    ------
    DataError
        Missing file, unsupported suffix, or a file polars cannot open.
    """
    path = _log_path(path)
    try:
        if path.suffix.lower() == ".parquet":
            return pl.scan_parquet(path)
        return pl.scan_csv(path, infer_schema_length=_CSV_INFER_ROWS)
    except _READ_ERRORS as err:
        raise DataError(f"cannot open log: {err}", path) from None


def _schema(lf: pl.LazyFrame, path: Path) -> pl.Schema:
    try:
        return lf.collect_schema()
    except _READ_ERRORS as err:
        # An empty CSV file (no header) lands here as NoDataError.
        raise DataError(
            f"cannot read the log's columns ({type(err).__name__}: {err})", path
        ) from None


def _read_error(err: Exception, path: Path) -> DataError:
    # Polars and pyarrow name the problem (bad UTF-8, a value that does not parse as the
    # column's type, a truncated footer); the file name is added here.
    return DataError(f"cannot read the log ({type(err).__name__}: {err})", path)


def _require_columns(schema: pl.Schema, names: Sequence[str], path: Path) -> None:
    missing = [n for n in names if n not in schema]
    if missing:
        raise DataError(
            f"missing column {missing[0]!r} (columns are: {', '.join(schema.names())})", path
        )


def _empty_log(path: Path) -> DataError:
    return DataError("empty log: the file has no rows", path)


def _is_list(dtype: pl.DataType) -> bool:
    return isinstance(dtype, (pl.List, pl.Array))


# -- the feature map, in one streaming pass --------------------------------------------


def stream_feature_map(
    path: str | Path, fields: Sequence[str], multi: Mapping[str, str] | None = None
) -> FeatureMap:
    """Learn a :class:`FeatureMap` from a log in one streaming pass.

    Equal to ``FeatureMap.fit(whole_log, fields, multi)``, computed with the polars
    streaming engine without loading the log; memory holds the distinct values of the
    fields and one chunk, whatever the number of rows.

    - Parquet: one streaming group-by per field (a distinct), run together by
      :func:`polars.collect_all`, which scans the file once and feeds every query.
    - CSV: the same distincts, computed chunk by chunk from
      :meth:`polars.LazyFrame.collect_batches` and merged. Polars' CSV group-by and
      row count memory-map the whole file, so their resident memory grows with the
      file; the chunked pass does not (``eval/bench/streaming_memory.py --csv``).

    Parameters
    ----------
    path : str or Path
        A ``.parquet`` or ``.csv`` log.
    fields : list of str
        Columns to use, in the order of the feature space.
    multi : dict of str to str, optional
        Multi-valued columns and their separator, e.g. ``{"genres": "|"}`` for cells
        such as ``"Action|Comedy"``. List columns (Parquet) are also accepted.

    Returns
    -------
    FeatureMap
        Categories sorted as :meth:`FeatureMap.fit` sorts them.

    Raises
    ------
    DataError
        Missing file or column, unsupported suffix, empty log.
    ConfigError
        Repeated field names, or ``multi`` naming a column that is not a field.
    """
    fields = list(fields)
    multi = dict(multi or {})
    if len(set(fields)) != len(fields):
        raise ConfigError(f"fields must be unique, got {fields}")
    unknown = sorted(set(multi) - set(fields))
    if unknown:
        raise ConfigError(f"multi names columns that are not in fields: {unknown}")
    path = _log_path(path)
    lf = scan_log(path)
    schema = _schema(lf, path)
    _require_columns(schema, fields, path)

    values = {}
    for name in fields:
        column = pl.col(name)
        if name in multi and schema[name] == pl.String:
            # Split in the engine so only distinct *pieces* are kept: the number of
            # distinct separator-joined combinations can grow with the log.
            column = column.str.split(multi[name]).explode()
        elif name in multi and _is_list(schema[name]):
            column = column.explode()
        values[name] = column.alias(name)
    try:
        if path.suffix.lower() == ".parquet":
            n_rows, distinct = _distinct_parquet(lf, values)
        else:
            n_rows, distinct = _distinct_chunked(lf.select(fields), values)
    except _READ_ERRORS as err:
        raise _read_error(err, path) from None
    if n_rows == 0:
        raise _empty_log(path)

    # The distinct values go through FeatureMap.fit itself, so the category strings, their
    # order and whether the field may be empty are exactly what fitting on the whole log
    # gives: fit only ever looks at each value on its own, never at how often or where
    # it occurs.
    categories: dict[str, tuple[str, ...]] = {}
    optional = []
    for name in fields:
        sep = {name: multi[name]} if name in multi else None
        fitted = FeatureMap.fit(distinct[name], [name], sep).field(name)
        categories[name] = fitted.categories
        if fitted.optional:
            optional.append(name)
    return FeatureMap.from_categories(categories, multi, optional)


def _distinct_parquet(
    lf: pl.LazyFrame, values: Mapping[str, pl.Expr]
) -> tuple[int, dict[str, pl.DataFrame]]:
    # A group-by with no aggregates is polars' streaming distinct; a
    # ``select(col.unique().implode())`` looks equivalent but gathers the whole column.
    queries = [lf.select(pl.len())]
    queries += [lf.select(expr).group_by(name).agg() for name, expr in values.items()]
    results = pl.collect_all(queries, engine="streaming")
    return int(results[0].item()), dict(zip(values, results[1:], strict=True))


def _distinct_chunked(
    lf: pl.LazyFrame, values: Mapping[str, pl.Expr]
) -> tuple[int, dict[str, pl.DataFrame]]:
    if not hasattr(pl.LazyFrame, "collect_batches"):
        raise ConfigError("streaming a CSV log needs polars >= 1.34")
    n_rows = 0
    seen = {name: pl.DataFrame() for name in values}
    for chunk in lf.collect_batches(chunk_size=_CSV_MAP_ROWS, lazy=True):
        n_rows += chunk.height
        for name, expr in values.items():
            new = chunk.select(expr).unique()
            seen[name] = new if seen[name].is_empty() else pl.concat([seen[name], new]).unique()
    return n_rows, seen


# -- value -> code, one chunk at a time ------------------------------------------------


class _FieldCodes:
    """Maps a field's raw values to category positions, as :meth:`FeatureMap.encode` does.

    Integer columns, the common case for user and item ids, skip strings altogether
    when every category is the canonical text of an integer: a sorted search on the
    integers then finds exactly the categories the string lookup would.
    """

    def __init__(self, field: Field):
        self.field = field
        self.index = pd.Index(np.array(field.categories, dtype=object), dtype=object)
        self.ints: tuple[np.ndarray, np.ndarray] | None = None
        try:
            ints = np.array([int(c) for c in field.categories], dtype=np.int64)
        except (ValueError, OverflowError):
            return
        if all(str(i) == c for i, c in zip(ints.tolist(), field.categories, strict=True)):
            order = np.argsort(ints, kind="stable")
            self.ints = (ints[order], order)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """Category position of each value: -1 when unknown, -2 when missing."""
        if self.ints is not None and values.dtype.kind == "i":
            sorted_ints, order = self.ints
            if not sorted_ints.size:
                return np.full(values.size, -1, dtype=np.int64)
            values = values.astype(np.int64, copy=False)
            pos = np.searchsorted(sorted_ints, values)
            pos[pos == sorted_ints.size] = 0
            return np.where(sorted_ints[pos] == values, order[pos], -1)
        codes, strings, null = distinct_category_strings(values)
        if not strings.size:
            return np.full(values.size, _NO_FEATURE, dtype=np.int64)
        table = self.index.get_indexer(strings).astype(np.int64)
        table[null] = _NO_FEATURE
        return np.where(codes < 0, _NO_FEATURE, table[np.maximum(codes, 0)])


# -- one chunk of the log --------------------------------------------------------------


@dataclass
class LogChunk:
    """Consecutive rows of a log, encoded.

    Attributes
    ----------
    X : scipy.sparse.csr_matrix
        float32 0/1 rows, ``(n, n_features)``, canonical, as :meth:`FeatureMap.encode`.
    y : numpy.ndarray
        float32 labels in {-1, +1}.
    start : int
        Position in the file (from 0) of the chunk's first row. The rows after it follow it in
        the file, except where a chunk of a shuffled visit (:meth:`StreamingLog.chunks`
        with an rng) runs from one Parquet row group into the next.
    ratings : numpy.ndarray or None
        float32 raw label values when they were thresholded.
    user_ids, item_ids : numpy.ndarray or None
        int64 ids from ``user_column`` / ``item_column``.
    """

    X: sp.csr_matrix
    y: np.ndarray
    start: int
    ratings: np.ndarray | None = None
    user_ids: np.ndarray | None = None
    item_ids: np.ndarray | None = None

    def __len__(self) -> int:
        return self.X.shape[0]


class StreamingLog:
    """An interaction log served as CSR mini-batches with bounded memory.

    Parameters
    ----------
    path : str or Path
        A ``.parquet`` or ``.csv`` log.
    feature_map : FeatureMap
        Encodes the log's rows; its field names are columns of the log. Build it with
        :func:`stream_feature_map` (or reuse a trained model's map).
    label : str
        Label column, read as :func:`~fmadv.data.features.frame_to_dataset` reads it:
        without ``threshold`` or ``positive`` it holds -1/+1, 0/1 or booleans.
    threshold : float, optional
        Numeric labels: +1 when ``label >= threshold``, else -1 (ratings kept in
        :attr:`LogChunk.ratings`).
    positive : scalar or collection, optional
        Label value(s) meaning +1; every other value means -1. With either, the label
        column is read once when the log is opened, and a :class:`DataError` is raised
        if every row comes out the same class or a label is missing.
    chunk_rows : int
        Rows read and encoded at a time (about: CSV chunks follow the engine's morsels).
    shuffle_chunks : int
        Chunks mixed together by the shuffle buffer of :meth:`batches`.
    user_column, item_column : str, optional
        Integer id columns copied into :attr:`LogChunk.user_ids` / ``item_ids``.
    unknown : {"error", "ignore"}
        A category the feature map does not know raises :class:`DataError` naming the
        field, the value and the row, or is dropped (the row keeps its other features).
        An empty cell is an error unless the field is optional or multi-valued, as in
        :meth:`FeatureMap.encode`.

    Notes
    -----
    Parquet is read with ``pyarrow.parquet.ParquetFile.iter_batches`` without
    pre-buffering, so memory is bounded by ``chunk_rows`` and one row group's pages; CSV
    with ``polars.LazyFrame.collect_batches``, the streaming engine with back-pressure.
    Only the needed columns are read. Peak memory does not grow with the number of rows
    (``eval/bench/streaming_memory.py`` measures it).

    Examples
    --------
    >>> fmap = stream_feature_map("log.parquet", ["user", "item"])  # doctest: +SKIP
    >>> log = StreamingLog("log.parquet", fmap, "rating", threshold=4)  # doctest: +SKIP
    >>> fit_loop(model, log.batch_source(4096), log.n_rows, None, config)  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | Path,
        feature_map: FeatureMap,
        label: str,
        threshold: float | None = None,
        positive: Any = None,
        chunk_rows: int = 262_144,
        shuffle_chunks: int = 4,
        user_column: str | None = None,
        item_column: str | None = None,
        unknown: str = "error",
    ):
        if threshold is not None and positive is not None:
            raise ConfigError("pass threshold or positive, not both")
        if not isinstance(feature_map, FeatureMap):
            raise ConfigError(f"feature_map must be a FeatureMap, got {type(feature_map).__name__}")
        integer("chunk_rows", chunk_rows, 1)
        integer("shuffle_chunks", shuffle_chunks, 1)
        if unknown not in ("error", "ignore"):
            raise ConfigError(f"unknown must be 'error' or 'ignore', got {unknown!r}")
        self.path = _log_path(path)
        self.feature_map = feature_map
        self.label = label
        self.threshold = threshold
        self.positive = positive
        self.chunk_rows = int(chunk_rows)
        self.shuffle_chunks = int(shuffle_chunks)
        self.user_column = user_column
        self.item_column = item_column
        self.unknown = unknown
        self.is_parquet = self.path.suffix.lower() == ".parquet"

        schema = _schema(scan_log(self.path), self.path)
        wanted = [*feature_map.field_names, label, user_column, item_column]
        self.columns: list[str] = list(dict.fromkeys(c for c in wanted if c is not None))
        _require_columns(schema, self.columns, self.path)
        self._codes = {f.name: _FieldCodes(f) for f in feature_map.fields}
        labelled = threshold is not None or positive is not None
        self._n_rows = self._check_label_classes() if labelled else self._count_rows()
        if self._n_rows == 0:
            raise _empty_log(self.path)

    def __repr__(self) -> str:
        return (
            f"StreamingLog({str(self.path)!r}, n_rows={self._n_rows}, "
            f"n_features={self.feature_map.n_features}, label={self.label!r})"
        )

    # -- size ---------------------------------------------------------------------------

    @property
    def n_rows(self) -> int:
        """Rows in the log (Parquet: from the footer; CSV: counted once, when opened)."""
        return self._n_rows

    @property
    def n_features(self) -> int:
        """Width of the encoded rows."""
        return self.feature_map.n_features

    def _count_rows(self) -> int:
        try:
            if self.is_parquet:
                return int(pq.ParquetFile(self.path).metadata.num_rows)
            # Streams one column: polars' own CSV count memory-maps the whole file, and
            # every page it touches counts as resident memory.
            first = scan_log(self.path).select(pl.first())
            return sum(c.height for c in first.collect_batches(chunk_size=1 << 20, lazy=True))
        except _READ_ERRORS as err:
            raise _read_error(err, self.path) from None

    def _check_label_classes(self) -> int:
        """Rows in the log, counted in one pass over the label column that also checks
        that the threshold or positive values give both classes. Checked per chunk, a
        log sorted by rating would pass; checked during training, the error would come
        an epoch late."""
        counts = LabelCounts()
        for frame in self._frames(None, [self.label]):
            raw = frame.get_column(self.label).to_numpy()
            y = self._label_signs(raw, lambda i, at=counts.rows: at + i)
            counts.add(raw, y, self.threshold)
        counts.check(
            threshold=self.threshold, positive=self.positive, column=self.label, path=self.path
        )
        return counts.rows

    # -- chunks -------------------------------------------------------------------------

    def _frames(
        self, groups: list[int] | None, columns: list[str] | None = None
    ) -> Iterator[pl.DataFrame]:
        """Raw chunks of ``columns`` (default: the needed ones); Parquet row groups in the
        order ``groups``."""
        columns = self.columns if columns is None else columns
        try:
            if self.is_parquet:
                with pq.ParquetFile(
                    self.path, pre_buffer=False, buffer_size=_PARQUET_BUFFER
                ) as parquet:
                    yield from (
                        pl.from_arrow(batch)
                        for batch in parquet.iter_batches(
                            batch_size=self.chunk_rows, row_groups=groups, columns=columns
                        )
                    )
            else:
                if not hasattr(pl.LazyFrame, "collect_batches"):
                    raise ConfigError("streaming a CSV log needs polars >= 1.34")
                lf = scan_log(self.path).select(columns)
                # lazy=True: the query starts at the first chunk asked for, and stops
                # when this generator is dropped (e.g. training stopped early).
                yield from lf.collect_batches(chunk_size=self.chunk_rows, lazy=True)
        except _READ_ERRORS as err:
            raise _read_error(err, self.path) from None

    def chunks(self, rng: np.random.Generator | None = None) -> Iterator[LogChunk]:
        """Encoded chunks of the log, about ``chunk_rows`` rows each.

        Parameters
        ----------
        rng : numpy.random.Generator, optional
            Parquet only: visit the row groups in an order drawn from ``rng`` (rows
            inside a row group keep their file order). Default: file order.
        """
        groups: list[int] | None = None
        # Stream position -> file position, so that messages name the row in the file
        # even when the row groups are visited out of order.
        stream_starts = file_starts = np.zeros(1, dtype=np.int64)
        if self.is_parquet:
            with pq.ParquetFile(self.path) as parquet:
                meta = parquet.metadata
                sizes = np.array(
                    [meta.row_group(g).num_rows for g in range(meta.num_row_groups)], np.int64
                )
            order = np.arange(sizes.size) if rng is None else rng.permutation(sizes.size)
            groups = order.tolist()
            stream_starts = np.concatenate([[0], np.cumsum(sizes[order])[:-1]])
            file_starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])[order]

        def file_position(streamed: int) -> int:
            g = int(np.searchsorted(stream_starts, streamed, side="right")) - 1
            return int(file_starts[g] + streamed - stream_starts[g])

        streamed = 0
        for frame in self._frames(groups):
            if frame.height:
                yield self._encode(frame, lambda i, at=streamed: file_position(at + i))
            streamed += frame.height

    def _encode(self, frame: pl.DataFrame, position: Callable[[int], int]) -> LogChunk:
        """Encode one raw chunk; ``position(i)`` is the file position (from 0) of its row
        ``i``."""
        X = self._encode_features(frame, position)
        y, ratings = self._labels(frame.get_column(self.label), position)
        ids = {
            key: self._ids(frame.get_column(col), col)
            for key, col in (("user_ids", self.user_column), ("item_ids", self.item_column))
            if col is not None
        }
        return LogChunk(X=X, y=y, start=position(0), ratings=ratings, **ids)

    def _encode_features(
        self, frame: pl.DataFrame, position: Callable[[int], int]
    ) -> sp.csr_matrix:
        n = frame.height
        all_rows: list[np.ndarray] = []
        all_cols: list[np.ndarray] = []
        for f in self.feature_map.fields:
            column = frame.get_column(f.name)
            if f.multi and (column.dtype == pl.String or _is_list(column.dtype)):
                # One entry per (row, piece); a string cell splits on the separator and
                # drops empty pieces, as FeatureMap.encode does.
                exploded = frame.select(
                    pl.int_range(pl.len(), dtype=pl.Int64).alias("row"),
                    pl.col(f.name).str.split(f.separator)
                    if column.dtype == pl.String
                    else pl.col(f.name),
                ).explode(f.name)
                if column.dtype == pl.String:
                    exploded = exploded.filter(pl.col(f.name) != "")
                rows = exploded.get_column("row").to_numpy()
                values = exploded.get_column(f.name).to_numpy()
            else:
                rows = np.arange(n, dtype=np.int64)
                values = column.to_numpy()
            codes = self._codes[f.name](values)
            if not (f.multi or f.optional):
                empty = codes == _NO_FEATURE
                if empty.any():
                    row = position(int(rows[np.argmax(empty)])) + 1
                    raise empty_cell_error(f, row, self.path)
            if self.unknown == "error":
                bad = codes == -1
                if bad.any():
                    i = int(np.argmax(bad))
                    row = position(int(rows[i])) + 1
                    raise unknown_category_error(f, category_str(values[i]), row, self.path)
            keep = codes >= 0
            all_rows.append(rows[keep])
            all_cols.append(codes[keep].astype(np.int64) + f.offset)
        row = np.concatenate(all_rows) if all_rows else np.empty(0, np.int64)
        col = np.concatenate(all_cols) if all_cols else np.empty(0, np.int64)
        X = sp.csr_matrix(
            (np.ones(row.size, dtype=np.float32), (row, col)),
            shape=(n, self.feature_map.n_features),
            dtype=np.float32,
        )
        X.sum_duplicates()
        # A value listed twice in one multi-valued cell is still one active feature.
        X.data[:] = 1.0
        return X

    def _labels(
        self, column: pl.Series, position: Callable[[int], int]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        raw = column.to_numpy()
        y = self._label_signs(raw, position)
        if self.threshold is None:
            return y, None
        return y, np.asarray(raw, dtype=np.float64).astype(np.float32)

    def _label_signs(self, raw: np.ndarray, position: Callable[[int], int]) -> np.ndarray:
        """Labels of one chunk; the classes are checked for the whole log, when opened."""
        return binary_labels(
            raw,
            threshold=self.threshold,
            positive=self.positive,
            column=self.label,
            path=self.path,
            row=lambda i: position(i) + 1,
            check_classes=False,
        )

    def _ids(self, column: pl.Series, name: str) -> np.ndarray:
        try:
            if column.null_count():
                raise ValueError
            return column.cast(pl.Int64, strict=True).to_numpy()
        except (ValueError, pl.exceptions.PolarsError):
            raise DataError(f"column {name!r} must hold integer ids", self.path) from None

    # -- batches ------------------------------------------------------------------------

    def batches(
        self, batch_size: int, rng: np.random.Generator | None = None
    ) -> Iterator[tuple[sp.csr_matrix, np.ndarray]]:
        """One epoch of ``(rows, labels)`` mini-batches; every row exactly once.

        Parameters
        ----------
        batch_size : int
            Rows per batch; only the last batch of the epoch may be shorter. Batches do
            not depend on ``chunk_rows``: rows left over at the end of a chunk start the
            next batch.
        rng : numpy.random.Generator, optional
            Without it, rows come in file order (the batches of
            :func:`~fmadv.training.fm.iterate_batches` over the whole log). With it,
            a seeded shuffle buffer: ``shuffle_chunks`` chunks (plus the leftover rows of
            the previous buffer) are pooled and permuted, and the pooled rows are served
            before the next chunks are read; for Parquet the row groups are also visited
            in a random order. The same generator state gives the same epoch.

        Notes
        -----
        This is not a global shuffle. A row can only land among the rows read around
        the same time: its buffer of about ``shuffle_chunks * chunk_rows`` rows (and,
        for Parquet, whichever row groups were drawn next to it). A global permutation
        needs random access to single rows, which columnar and CSV files do not give
        cheaply, or memory proportional to the log. The buffer is what keeps memory
        bounded; the price is that a log sorted by time or by user stays partly sorted
        within an epoch. Write such a log in random order once (e.g. a polars sort on a
        random key with ``sink_parquet``) when that matters, or raise ``shuffle_chunks``.

        Yields
        ------
        rows : scipy.sparse.csr_matrix
            float32 0/1 rows, ``(batch, n_features)``.
        labels : numpy.ndarray
            float32, -1.0 or +1.0.
        """
        integer("batch_size", batch_size, 1)
        pool = self.shuffle_chunks if rng is not None else 1
        chunks = self.chunks(rng)
        carry_X = sp.csr_matrix((0, self.n_features), dtype=np.float32)
        carry_y = np.empty(0, dtype=np.float32)
        while True:
            group = list(itertools.islice(chunks, pool))
            if not group:
                break
            X = sp.vstack([carry_X, *(c.X for c in group)], format="csr", dtype=np.float32)
            y = np.concatenate([carry_y, *(c.y for c in group)])
            del group  # the chunks themselves: only the pooled copy is needed now
            n = X.shape[0]
            order = rng.permutation(n) if rng is not None else None
            full = n - n % batch_size
            for lo in range(0, full, batch_size):
                if order is None:
                    yield X[lo : lo + batch_size], y[lo : lo + batch_size]
                else:
                    rows = order[lo : lo + batch_size]
                    yield X[rows], y[rows]
            rest = slice(full, n) if order is None else order[full:]
            carry_X, carry_y = X[rest], y[rest]
        if carry_y.size:
            yield carry_X, carry_y

    def batch_source(
        self, batch_size: int, shuffle: bool = True
    ) -> Callable[[np.random.Generator, torch.device], Iterator[tuple[Any, torch.Tensor]]]:
        """A ``batches(rng, device)`` callable for :func:`~fmadv.training.loop.fit_loop`.

        Parameters
        ----------
        batch_size : int
            Rows per batch.
        shuffle : bool
            Use the loop's generator for the shuffle buffer of :meth:`batches`; False
            serves every epoch in file order.

        Returns
        -------
        callable
            ``source(rng, device)`` yields ``(SparseBatch, labels)`` with float32 labels
            in {-1, +1} on ``device``.
        """

        def source(
            rng: np.random.Generator, device: torch.device
        ) -> Iterator[tuple[SparseBatch, torch.Tensor]]:
            for rows, labels in self.batches(batch_size, rng if shuffle else None):
                yield SparseBatch(rows, device), torch.from_numpy(labels).to(device)

        return source
