"""Synthetic recommendation data drawn from a planted factorization machine.

Rows are user-item pairs: one-hot user, one-hot item, the user's ``segment`` and the
item's ``category``. Labels come from a random FM over those features,
``y = sign(y_hat(x) - median + noise)``, so a model of the right family can learn
them and the planted parameters are known. It is the default dataset of
``fmadv train``: it needs no download and loads in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

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
        return self.bias + X @ self.w + 0.5 * ((s**2).sum(1) - X @ (self.V**2).sum(1))


def _count(name: str, value: object, low: int) -> int:
    try:
        ok = int(value) == value and int(value) >= low  # type: ignore[call-overload]
    except (TypeError, ValueError):
        ok = False
    if not ok or isinstance(value, bool):
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def _draw(
    n_users: int,
    n_items: int,
    n_side: int,
    k: int,
    n_rows: int,
    noise: float,
    seed: int,
) -> tuple[Dataset, PlantedFM]:
    n_users = _count("n_users", n_users, 1)
    n_items = _count("n_items", n_items, 1)
    n_side = _count("n_side", n_side, 1)
    k = _count("k", k, 1)
    n_rows = _count("n_rows", n_rows, 10)
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
    fmap = FeatureMap.from_categories(
        {
            "user": range(n_users),
            "item": range(n_items),
            "segment": range(n_side),
            "category": range(n_side),
        }
    )
    n_features = fmap.n_features
    w = np.concatenate(
        [
            rng.normal(0, _W_ENTITY, n_users + n_items),
            rng.normal(0, _W_SIDE, 2 * n_side),
        ]
    )
    V = rng.normal(0, k**-0.25, size=(n_features, k))

    # Distinct user-item pairs, in random order.
    pairs = rng.choice(n_users * n_items, size=n_rows, replace=False)
    users, items = np.divmod(pairs, n_items)
    cols = np.stack(
        [
            fmap.field("user").offset + users,
            fmap.field("item").offset + items,
            fmap.field("segment").offset + segment[users],
            fmap.field("category").offset + category[items],
        ],
        axis=1,
    )
    X = sp.csr_matrix(
        (
            np.ones(cols.size, dtype=np.float32),
            np.sort(cols, axis=1).ravel(),
            np.arange(0, cols.size + 1, 4),
        ),
        shape=(n_rows, n_features),
    )
    planted = PlantedFM(0.0, w, V, 0.0)
    score = planted.decision_function(X)
    # Centre on the median so the classes are balanced, and scale the noise to the
    # spread of the scores so `noise` means the same thing for any size or k.
    bias = -float(np.median(score))
    noise_std = float(noise * np.std(score))
    y = np.sign(score + bias + rng.normal(0, 1, n_rows) * noise_std)
    y[y == 0] = 1.0
    planted = PlantedFM(bias, w, V, noise_std)
    data = Dataset(
        X=X,
        y=y.astype(np.float32),
        feature_map=fmap,
        name=NAME,
        user_ids=users.astype(np.int64),
        item_ids=items.astype(np.int64),
    )
    return data, planted


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
