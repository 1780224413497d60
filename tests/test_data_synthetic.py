"""Synthetic planted-FM data and logs: determinism, balance, layout, and that it is learnable."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

from fmadv.data import make_synthetic, planted_fm
from fmadv.data.synthetic import write_synthetic_log
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


def digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def test_seed_gives_the_data_it_always_gave(tmp_path: Path) -> None:
    # Results recorded on earlier versions depend on these exact draws.
    s = make_synthetic()
    assert digest(*(a for _, d in s for a in (d.X.indices, d.y, d.user_ids))) == "6ec7af623977ac03"
    path = write_synthetic_log(tmp_path / "a.parquet", 70_000, 300, 200, seed=4, chunk_rows=30_000)
    log = pl.read_parquet(path)
    assert digest(*(log[c].to_numpy() for c in ("user", "item", "rating"))) == "fc3083940976dad0"


def test_synthetic_log_is_deterministic(tmp_path: Path) -> None:
    a = write_synthetic_log(tmp_path / "a.parquet", 5_000, 50, 40, seed=1, chunk_rows=1_000)
    b = write_synthetic_log(tmp_path / "b.parquet", 5_000, 50, 40, seed=1, chunk_rows=2_345)
    c = write_synthetic_log(tmp_path / "c.parquet", 5_000, 50, 40, seed=2)
    fa, fb, fc = (pl.read_parquet(p) for p in (a, b, c))
    assert fa.equals(fb) and not fa.equals(fc)
    assert fa.columns == ["user", "item", "segment", "category", "rating"]
    assert pq.ParquetFile(a).num_row_groups == 5
    assert set(fa["rating"].unique().to_list()) == {1, 2, 3, 4, 5}
    assert fa["user"].max() < 50 and fa["item"].max() < 40
    # A segment belongs to a user, a category to an item.
    assert fa.group_by("user").agg(pl.col("segment").n_unique())["segment"].max() == 1
    assert fa.group_by("item").agg(pl.col("category").n_unique())["category"].max() == 1


@pytest.mark.parametrize(
    "kwargs", [{"n_rows": 0}, {"n_users": 0}, {"chunk_rows": 2.5}, {"path": "log.csv"}]
)
def test_bad_log_arguments(tmp_path: Path, kwargs: dict) -> None:
    args = {"path": "log.parquet", "n_rows": 10, **kwargs}
    args["path"] = tmp_path / args["path"]
    with pytest.raises(ConfigError):
        write_synthetic_log(**args)
