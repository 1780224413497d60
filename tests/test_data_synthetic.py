"""Synthetic planted-FM data: determinism, balance, layout, and that it is learnable."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.sparse as sp

from fmadv.data import make_synthetic, planted_fm
from fmadv.errors import ConfigError


def auc(scores: np.ndarray, y: np.ndarray) -> float:
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    pos = y > 0
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def test_defaults_fast_layout_and_balance() -> None:
    start = time.perf_counter()
    s = make_synthetic()
    assert time.perf_counter() - start < 1.0
    assert (s.train.n_rows, s.valid.n_rows, s.test.n_rows) == (14400, 1600, 4000)
    fmap = s.train.feature_map
    assert fmap.field_names == ["user", "item", "segment", "category"]
    assert fmap.n_features == 500 + 300 + 5 + 5
    for _, d in s:
        assert d.is_binary and np.all(np.diff(d.X.indptr) == 4)
        assert 0.45 < d.positive_rate < 0.55
        cols = d.X.indices.reshape(-1, 4)
        np.testing.assert_array_equal(cols[:, 0], d.user_ids)
        np.testing.assert_array_equal(cols[:, 1] - 500, d.item_ids)
    pairs = np.concatenate([d.user_ids * 1000 + d.item_ids for _, d in s])
    assert np.unique(pairs).size == 20000  # distinct user-item pairs
    # A user always has the same segment.
    seg = s.train.X[:, fmap.field_slice("segment")].tocsr().indices
    first = {}
    for u, g in zip(s.train.user_ids.tolist(), seg.tolist(), strict=True):
        assert first.setdefault(u, g) == g


def test_same_seed_same_arrays_other_seed_differs() -> None:
    a, b, c = make_synthetic(seed=7), make_synthetic(seed=7), make_synthetic(seed=8)
    assert (a.train.X != b.train.X).nnz == 0
    np.testing.assert_array_equal(a.train.y, b.train.y)
    np.testing.assert_array_equal(a.test.item_ids, b.test.item_ids)
    assert not np.array_equal(a.train.user_ids, c.train.user_ids)
    assert not np.array_equal(a.train.y, c.train.y)


def test_labels_follow_planted_fm() -> None:
    kwargs = {"n_users": 100, "n_items": 80, "n_rows": 3000, "seed": 2}
    s = make_synthetic(**kwargs, noise=0.0, valid_size=0)
    model = planted_fm(**kwargs, noise=0.0)
    X = sp.vstack([s.train.X, s.test.X]).tocsr()
    y = np.concatenate([s.train.y, s.test.y])
    # Noise-free labels are exactly the sign of the planted score.
    np.testing.assert_array_equal(np.where(model.decision_function(X) >= 0, 1, -1), y)
    noisy = make_synthetic(**kwargs, noise=0.1, valid_size=0)
    agree = np.mean(noisy.test.y == s.test.y)
    assert 0.85 < agree < 1.0


def test_learnable_signal() -> None:
    # The planted score separates the test labels almost perfectly (the noise is small),
    # and per-user + per-item averages of the training labels alone already beat
    # chance clearly, so a model trained on it has plenty to learn.
    s = make_synthetic()
    model = planted_fm()
    assert auc(model.decision_function(s.test.X), s.test.y) > 0.97
    n_u, n_i = 500, 300
    u_mean = np.bincount(s.train.user_ids, s.train.y, n_u) / np.maximum(
        np.bincount(s.train.user_ids, minlength=n_u), 1
    )
    i_mean = np.bincount(s.train.item_ids, s.train.y, n_i) / np.maximum(
        np.bincount(s.train.item_ids, minlength=n_i), 1
    )
    assert auc(u_mean[s.test.user_ids] + i_mean[s.test.item_ids], s.test.y) > 0.75


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_rows": 10**6},
        {"noise": -1.0},
        {"noise": "loud"},
        {"k": 0},
        {"n_users": 2.5},
        {"n_items": "many"},
        {"test_size": 0},
    ],
)
def test_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        make_synthetic(**kwargs)
