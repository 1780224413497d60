"""In-memory datasets: a sparse binary design matrix with +-1 labels, and its splits."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from fmadv.errors import DataError

if TYPE_CHECKING:
    from fmadv.data.features import FeatureMap


@dataclass(repr=False)
class Dataset:
    """Rows of sparse features with binary labels.

    Parameters
    ----------
    X : scipy.sparse.csr_matrix
        Design matrix, shape ``(n_rows, n_features)``. Stored as float32 CSR in canonical
        form (sorted column indices, no duplicates); other sparse inputs are converted.
    y : numpy.ndarray
        float32 labels, each -1.0 or +1.0.
    feature_map : FeatureMap, optional
        Names of the columns of ``X``. Its ``n_features`` must match ``X.shape[1]``.
    name : str
        Short name used in reports, e.g. ``"movielens-100k"``.
    user_ids, item_ids : numpy.ndarray, optional
        int64 raw user / item id of each row, when the source has users and items.
    ratings : numpy.ndarray, optional
        float32 raw rating of each row, when the labels were derived from ratings.
    """

    X: sp.csr_matrix
    y: np.ndarray
    feature_map: FeatureMap | None = None
    name: str = ""
    user_ids: np.ndarray | None = None
    item_ids: np.ndarray | None = None
    ratings: np.ndarray | None = None

    def __post_init__(self) -> None:
        X = self.X
        if not sp.issparse(X):
            raise DataError(
                f"{self._label()}X must be a scipy sparse matrix, got {type(X).__name__}"
            )
        if not isinstance(X, sp.csr_matrix) or X.dtype != np.float32:
            X = sp.csr_matrix(X, dtype=np.float32)
        if not X.has_canonical_format:
            # Copy first: canonicalising in place would edit the caller's matrix.
            X = X.copy()
            X.sum_duplicates()
        self.X = X
        y = np.asarray(self.y, dtype=np.float32)
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise DataError(
                f"{self._label()}y must be 1-D with one label per row of X "
                f"({X.shape[0]}), got shape {y.shape}"
            )
        bad = np.flatnonzero(np.abs(y) != 1)
        if bad.size:
            raise DataError(
                f"{self._label()}labels must be -1.0 or +1.0; row {bad[0]} has {float(y[bad[0]])!r}"
            )
        self.y = y
        self.user_ids = self._column(self.user_ids, np.int64, "user_ids")
        self.item_ids = self._column(self.item_ids, np.int64, "item_ids")
        self.ratings = self._column(self.ratings, np.float32, "ratings")
        if self.feature_map is not None and self.feature_map.n_features != X.shape[1]:
            raise DataError(
                f"{self._label()}feature map has {self.feature_map.n_features} features "
                f"but X has {X.shape[1]} columns"
            )

    def _label(self) -> str:
        return f"{self.name}: " if self.name else ""

    def _column(self, values: np.ndarray | None, dtype: type, what: str) -> np.ndarray | None:
        if values is None:
            return None
        arr = np.asarray(values, dtype=dtype)
        if arr.shape != (self.X.shape[0],):
            raise DataError(
                f"{self._label()}{what} must hold one value per row ({self.X.shape[0]}), "
                f"got shape {arr.shape}"
            )
        return arr

    @property
    def n_rows(self) -> int:
        """Number of rows."""
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        """Number of feature columns."""
        return int(self.X.shape[1])

    @property
    def is_binary(self) -> bool:
        """True when every stored value of ``X`` is exactly 1."""
        return bool(np.all(self.X.data == 1))

    @property
    def positive_rate(self) -> float:
        """Share of rows labelled +1 (nan for an empty dataset)."""
        return float(np.mean(self.y > 0)) if self.n_rows else float("nan")

    def __len__(self) -> int:
        return self.n_rows

    def subset(self, rows: np.ndarray | slice | list[int]) -> Dataset:
        """Rows selected by integer positions, a boolean mask or a slice, as a new Dataset.

        The feature map is shared (it is immutable); arrays are copied.
        """
        if isinstance(rows, slice):
            idx = np.arange(self.n_rows)[rows]
        else:
            idx = np.asarray(rows)
            if idx.dtype == bool:
                if idx.shape != (self.n_rows,):
                    raise DataError(
                        f"{self._label()}boolean mask must have {self.n_rows} entries, "
                        f"got {idx.shape}"
                    )
                idx = np.flatnonzero(idx)
            elif idx.size and idx.dtype.kind not in "iu":
                raise DataError(f"{self._label()}row selection must be integers or booleans")
        idx = idx.astype(np.int64, copy=False)

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[idx]

        return Dataset(
            X=self.X[idx],
            y=self.y[idx],
            feature_map=self.feature_map,
            name=self.name,
            user_ids=pick(self.user_ids),
            item_ids=pick(self.item_ids),
            ratings=pick(self.ratings),
        )

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, n_rows={self.n_rows}, n_features={self.n_features}, "
            f"nnz={self.X.nnz}, positive_rate={self.positive_rate:.3f})"
        )


@dataclass
class Splits:
    """Train / validation / test datasets that share one feature space.

    ``valid`` is None when no validation set was asked for.
    """

    train: Dataset
    valid: Dataset | None
    test: Dataset

    def __post_init__(self) -> None:
        widths = {d.n_features for d in self.datasets().values()}
        if len(widths) > 1:
            raise DataError(f"splits have different feature counts: {sorted(widths)}")

    def datasets(self) -> dict[str, Dataset]:
        """The present splits by name, in the order train, valid, test."""
        out = {"train": self.train, "valid": self.valid, "test": self.test}
        return {k: v for k, v in out.items() if v is not None}

    def __iter__(self) -> Iterator[tuple[str, Dataset]]:
        return iter(self.datasets().items())

    @property
    def feature_map(self) -> FeatureMap | None:
        """Feature map of the training set (all splits share it)."""
        return self.train.feature_map

    @property
    def n_features(self) -> int:
        """Number of feature columns shared by the splits."""
        return self.train.n_features
