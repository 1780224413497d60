"""Synthetic recommendation data drawn from a planted factorization machine.

Rows are user-item pairs: one-hot user, one-hot item, the user's ``segment`` and the
item's ``category``. A random FM over those features (:class:`PlantedFM`) scores each
row, so a model of the right family can learn the labels and the planted parameters
are known. Two samplers share that model:

- :func:`make_synthetic` draws distinct user-item pairs uniformly and labels them
  ``y = sign(y_hat(x) - median + noise)``. It is the default dataset of ``fmadv
  train``: it needs no download and loads in milliseconds.
- :func:`write_synthetic_log` writes an interaction log of any size in bounded memory:
  pairs drawn with Zipf-like popularity, and 1-5 ratings that bucket the noisy score.
  Tests of :mod:`fmadv.data.stream` and the memory benchmark
  (``eval/bench/streaming_memory.py``) read it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from fmadv.checks import integer
from fmadv.data.dataset import Dataset, Splits
from fmadv.data.features import FeatureMap
from fmadv.data.splits import random_split, split_dataset
from fmadv.errors import ConfigError

NAME = "synthetic"

# Parameter scales. Factor entries have std k**-0.25, which gives each pairwise product
# <v_a, v_b> unit variance whatever k is. The terms fixed per user or per item (their
# weights, and their products with their own segment/category) carry about half of the
# variance of y_hat and the user-item interactions the rest, so a linear model learns
# something and an FM clearly more: at the defaults, one-hot logistic/hinge regression
# reaches a test AUC of about 0.85 and a plain FM (k=8, Adam, hinge) about 0.91.
_W_ENTITY = 1.0  # user and item weights
_W_SIDE = 0.5  # segment and category weights


@dataclass(frozen=True)
class PlantedFM:
    """The FM that generated a synthetic dataset.

    ``y_hat(x) = bias + <w, x> + 1/2 sum_f ((xV)_f^2 - (x^2)(V^2)_f)``; labels are the
    sign of ``y_hat`` plus Gaussian noise of std ``noise_std``.
    """

    bias: float
    w: np.ndarray
    V: np.ndarray
    noise_std: float

    def decision_function(self, X: sp.csr_matrix) -> np.ndarray:
        """Noise-free ``y_hat`` of the rows of a binary ``X``."""
        s = X @ self.V
        return self.bias + X @ self.w + 0.5 * ((s**2).sum(1) - X @ self._squared_norms)

    @functools.cached_property
    def _squared_norms(self) -> np.ndarray:
        # sum_f V_jf^2 per feature j, computed once: a log scores many blocks.
        return (self.V**2).sum(1)


@dataclass(frozen=True)
class _Layout:
    """Sizes of the four one-hot fields, laid out in the order user, item, segment,
    category (the order of the feature map of :func:`make_synthetic`)."""

    n_users: int
    n_items: int
    n_segments: int
    n_categories: int

    @property
    def n_features(self) -> int:
        return self.n_users + self.n_items + self.n_segments + self.n_categories

    def rows(
        self, users: np.ndarray, items: np.ndarray, segments: np.ndarray, categories: np.ndarray
    ) -> sp.csr_matrix:
        """One binary row per pair, with its user, item, segment and category active."""
        side = self.n_users + self.n_items
        # The fields follow each other in the index space, so each row's columns are
        # already in increasing order, as CSR wants them.
        cols = np.stack(
            [users, self.n_users + items, side + segments, side + self.n_segments + categories],
            axis=1,
        )
        return sp.csr_matrix(
            (np.ones(cols.size, dtype=np.float32), cols.ravel(), np.arange(0, cols.size + 1, 4)),
            shape=(len(users), self.n_features),
        )


def _draw_fm(rng: np.random.Generator, layout: _Layout, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights ``w`` and factors ``V`` of a planted FM over ``layout``'s features."""
    w = np.concatenate(
        [
            rng.normal(0, _W_ENTITY, layout.n_users + layout.n_items),
            rng.normal(0, _W_SIDE, layout.n_segments + layout.n_categories),
        ]
    )
    V = rng.normal(0, k**-0.25, size=(layout.n_features, k))
    return w, V


# -- the in-memory dataset -------------------------------------------------------------


def _draw(
    n_users: int,
    n_items: int,
    n_side: int,
    k: int,
    n_rows: int,
    noise: float,
    seed: int,
) -> tuple[Dataset, PlantedFM]:
    n_users = integer("n_users", n_users, 1)
    n_items = integer("n_items", n_items, 1)
    n_side = integer("n_side", n_side, 1)
    k = integer("k", k, 1)
    n_rows = integer("n_rows", n_rows, 10)
    if n_rows > n_users * n_items:
        raise ConfigError(
            f"n_rows={n_rows} exceeds the {n_users * n_items} distinct user-item pairs"
        )
    try:
        noise = float(noise)
    except (TypeError, ValueError):
        noise = float("nan")
    if not noise >= 0:
        raise ConfigError(f"noise must be a number >= 0, got {noise!r}")
    rng = np.random.default_rng(seed)
    segment = rng.integers(n_side, size=n_users)
    category = rng.integers(n_side, size=n_items)
    layout = _Layout(n_users, n_items, n_side, n_side)
    w, V = _draw_fm(rng, layout, k)

    # Distinct user-item pairs, in random order.
    pairs = rng.choice(n_users * n_items, size=n_rows, replace=False)
    users, items = np.divmod(pairs, n_items)
    X = layout.rows(users, items, segment[users], category[items])
    score = PlantedFM(0.0, w, V, 0.0).decision_function(X)
    # Centre on the median so the classes are balanced, and scale the noise to the
    # spread of the scores so `noise` means the same thing for any size or k.
    bias = -float(np.median(score))
    noise_std = float(noise * np.std(score))
    y = np.sign(score + bias + rng.normal(0, 1, n_rows) * noise_std)
    y[y == 0] = 1.0
    fmap = FeatureMap.from_categories(
        {
            "user": range(n_users),
            "item": range(n_items),
            "segment": range(n_side),
            "category": range(n_side),
        }
    )
    data = Dataset(
        X=X,
        y=y.astype(np.float32),
        feature_map=fmap,
        name=NAME,
        user_ids=users.astype(np.int64),
        item_ids=items.astype(np.int64),
    )
    return data, PlantedFM(bias, w, V, noise_std)


def make_synthetic(
    n_users: int = 500,
    n_items: int = 300,
    n_side: int = 5,
    k: int = 8,
    n_rows: int = 20000,
    noise: float = 0.1,
    seed: int = 0,
    test_size: float = 0.2,
    valid_size: float = 0.1,
) -> Splits:
    """Draw a planted-FM recommendation dataset.

    Parameters
    ----------
    n_users, n_items : int
        Number of users and items (one-hot fields ``user`` and ``item``).
    n_side : int
        Number of categories of each side field: ``segment`` (one per user) and
        ``category`` (one per item).
    k : int
        Rank of the planted FM's factors.
    n_rows : int
        Number of distinct user-item pairs (rows).
    noise : float
        Std of the Gaussian label noise, as a fraction of the std of ``y_hat``;
        0 gives noise-free labels.
    seed : int
        Everything (parameters, pairs, noise, split) follows from it.
    test_size, valid_size : float
        Random split fractions (``valid_size`` of what is left after test);
        ``valid_size=0`` gives ``valid=None``.

    Returns
    -------
    Splits
        Binary rows with 4 active features each, about balanced labels, ``user_ids``
        and ``item_ids`` filled, and a feature map with fields user, item, segment,
        category.
    """
    data, _ = _draw(n_users, n_items, n_side, k, n_rows, noise, seed)
    train, valid, test = random_split(data.n_rows, test_size, valid_size, seed)
    return split_dataset(data, train, valid, test)


def planted_fm(
    n_users: int = 500,
    n_items: int = 300,
    n_side: int = 5,
    k: int = 8,
    n_rows: int = 20000,
    noise: float = 0.1,
    seed: int = 0,
) -> PlantedFM:
    """The planted FM behind :func:`make_synthetic` called with the same arguments."""
    return _draw(n_users, n_items, n_side, k, n_rows, noise, seed)[1]


# -- a log of any size -----------------------------------------------------------------

_BLOCK_ROWS = 65_536  # rows drawn per random stream: the log does not depend on chunk_rows
_LOG_K = 8
_N_SEGMENTS = 10
_N_CATEGORIES = 20
# Share of ratings 1..5 (MovieLens-like: mostly 3 and 4); cut points on the noisy score.
_RATING_SHARES = (0.06, 0.11, 0.27, 0.34, 0.22)
_CALIBRATION_ROWS = 100_000


@dataclass(frozen=True)
class _LogModel:
    """The planted FM of a log, and how its rows are drawn and rated."""

    fm: PlantedFM
    layout: _Layout
    user_segment: np.ndarray
    item_category: np.ndarray
    user_cdf: np.ndarray
    item_cdf: np.ndarray
    cuts: np.ndarray

    def draw_pairs(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        users = np.minimum(np.searchsorted(self.user_cdf, rng.random(n)), self.user_cdf.size - 1)
        items = np.minimum(np.searchsorted(self.item_cdf, rng.random(n)), self.item_cdf.size - 1)
        return users, items

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        rows = self.layout.rows(users, items, self.user_segment[users], self.item_category[items])
        return self.fm.decision_function(rows)


def _popularity_cdf(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    # Zipf-like popularity over a random ranking: a few heavy users/items, a long tail.
    weights = (np.arange(n) + 10.0) ** -exponent
    weights = weights[rng.permutation(n)]
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def _log_model(n_users: int, n_items: int, seed: int) -> _LogModel:
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    layout = _Layout(n_users, n_items, _N_SEGMENTS, _N_CATEGORIES)
    w, V = _draw_fm(rng, layout, _LOG_K)
    model = _LogModel(
        fm=PlantedFM(0.0, w, V, 0.0),
        layout=layout,
        user_segment=rng.integers(_N_SEGMENTS, size=n_users),
        item_category=rng.integers(_N_CATEGORIES, size=n_items),
        user_cdf=_popularity_cdf(rng, n_users, 0.5),
        item_cdf=_popularity_cdf(rng, n_items, 0.8),
        cuts=np.zeros(len(_RATING_SHARES) - 1),
    )
    # Calibrate the noise and the rating cut points on a sample drawn once per seed.
    score = model.score(*model.draw_pairs(rng, _CALIBRATION_ROWS))
    noise_std = 0.5 * float(np.std(score))
    noisy = score + rng.normal(0, noise_std, score.size)
    cuts = np.quantile(noisy, np.cumsum(_RATING_SHARES)[:-1])
    return replace(model, fm=PlantedFM(0.0, w, V, noise_std), cuts=cuts)


def _block(model: _LogModel, seed: int, index: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    users, items = model.draw_pairs(rng, _BLOCK_ROWS)
    noisy = model.score(users, items) + rng.normal(0, model.fm.noise_std, _BLOCK_ROWS)
    rating = (np.searchsorted(model.cuts, noisy) + 1).astype(np.int8)
    return {"user": users, "item": items, "rating": rating}


def write_synthetic_log(
    path: str | Path,
    n_rows: int,
    n_users: int = 100_000,
    n_items: int = 50_000,
    seed: int = 0,
    chunk_rows: int = 1_000_000,
) -> Path:
    """Write a planted-FM interaction log to Parquet, ``chunk_rows`` rows at a time.

    Each row is one rating of an item by a user, drawn with Zipf-like popularity on
    both sides. Columns: ``user`` and ``item`` (int64 ids), ``segment`` (the user's
    segment, ``"s0"``..``"s9"``), ``category`` (the item's category, ``"c00"``..``"c19"``)
    and ``rating`` (int8, 1-5). The rating buckets a random factorization machine's
    score over the four one-hot fields plus Gaussian noise, so ``rating >= 4`` (about
    56% of rows) is learnable by an FM and not by chance.

    Parameters
    ----------
    path : str or Path
        Output ``.parquet`` file (overwritten).
    n_rows : int
        Rows to write (>= 1).
    n_users, n_items : int
        Id ranges ``[0, n_users)`` and ``[0, n_items)``.
    seed : int
        The same seed writes the same log, whatever ``chunk_rows`` is.
    chunk_rows : int
        Rows generated and written per step; also the Parquet row-group size. Memory is
        bounded by it (and by the planted model, ``O((n_users + n_items) * 8)``).

    Returns
    -------
    Path
        ``path``.
    """
    # Imported here: the in-memory dataset above is what most imports of fmadv.data
    # need, and pyarrow is a large import.
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    n_rows = integer("n_rows", n_rows, 1)
    n_users = integer("n_users", n_users, 1)
    n_items = integer("n_items", n_items, 1)
    chunk_rows = integer("chunk_rows", chunk_rows, 1)
    path = Path(path)
    if path.suffix.lower() != ".parquet":
        raise ConfigError(f"write_synthetic_log writes Parquet; got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    model = _log_model(n_users, n_items, seed)
    segments = pa.array([f"s{j}" for j in range(_N_SEGMENTS)])
    categories = pa.array([f"c{j:02d}" for j in range(_N_CATEGORIES)])
    schema = pa.schema(
        [
            ("user", pa.int64()),
            ("item", pa.int64()),
            ("segment", pa.string()),
            ("category", pa.string()),
            ("rating", pa.int8()),
        ]
    )
    with pq.ParquetWriter(path, schema) as writer:
        for lo in range(0, n_rows, chunk_rows):
            hi = min(lo + chunk_rows, n_rows)
            first, last = lo // _BLOCK_ROWS, (hi - 1) // _BLOCK_ROWS
            blocks = [_block(model, seed, b) for b in range(first, last + 1)]
            cut = slice(lo - first * _BLOCK_ROWS, hi - first * _BLOCK_ROWS)
            users = np.concatenate([b["user"] for b in blocks])[cut]
            items = np.concatenate([b["item"] for b in blocks])[cut]
            rating = np.concatenate([b["rating"] for b in blocks])[cut]
            table = pa.table(
                {
                    "user": users.astype(np.int64),
                    "item": items.astype(np.int64),
                    "segment": pc.take(segments, pa.array(model.user_segment[users])),
                    "category": pc.take(categories, pa.array(model.item_category[items])),
                    "rating": rating,
                },
                schema=schema,
            )
            writer.write_table(table, row_group_size=chunk_rows)
    return path
