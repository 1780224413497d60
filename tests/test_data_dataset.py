"""Dataset / Splits containers and the shared split functions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from fmadv.data import Dataset, FeatureMap, Splits, random_split
from fmadv.data.splits import carve
from fmadv.errors import ConfigError, DataError


def small() -> Dataset:
    X = sp.coo_matrix(([1, 1, 1, 1], ([0, 0, 1, 2], [2, 0, 1, 2])), shape=(3, 3))
    return Dataset(X, np.array([1, -1, 1]), name="s", user_ids=[5, 6, 7])


def test_canonical_float32_csr_and_properties() -> None:
    d = small()
    assert isinstance(d.X, sp.csr_matrix) and d.X.dtype == np.float32
    assert d.X.has_canonical_format and d.X[0].indices.tolist() == [0, 2]
    assert d.y.dtype == np.float32 and d.user_ids.dtype == np.int64
    assert (d.n_rows, d.n_features, len(d)) == (3, 3, 3)
    assert d.is_binary and d.positive_rate == pytest.approx(2 / 3)
    assert "n_rows=3" in repr(d)


def test_duplicates_summed_without_touching_input() -> None:
    X = sp.csr_matrix((np.ones(2, np.float32), np.array([1, 1]), np.array([0, 2])), shape=(1, 3))
    d = Dataset(X, np.array([1.0]))
    assert d.X.nnz == 1 and d.X.data.tolist() == [2.0] and not d.is_binary
    assert X.nnz == 2  # caller's matrix unchanged


def test_subset_variants() -> None:
    d = small()
    by_idx = d.subset([2, 0])
    by_mask = d.subset(np.array([True, False, True]))
    by_slice = d.subset(slice(1, None))
    assert by_idx.user_ids.tolist() == [7, 5] and by_idx.y.tolist() == [1, 1]
    assert by_mask.user_ids.tolist() == [5, 7]
    assert by_slice.user_ids.tolist() == [6, 7] and by_slice.name == "s"
    assert by_idx.item_ids is None
    with pytest.raises(DataError, match="boolean mask"):
        d.subset(np.array([True]))


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"y": np.array([1, 0, 1])}, r"labels must be -1\.0 or \+1\.0; row 1 has 0\.0"),
        ({"y": np.array([1, 1])}, "one label per row"),
        ({"user_ids": [1, 2]}, "user_ids must hold one value per row"),
        ({"feature_map": FeatureMap.from_categories({"a": "xy"})}, "2 features but X has 3"),
    ],
)
def test_validation(kwargs: dict, fragment: str) -> None:
    base = {"X": sp.eye(3, format="csr"), "y": np.array([1, -1, 1])}
    with pytest.raises(DataError, match=fragment):
        Dataset(**{**base, **kwargs})


def test_splits_container() -> None:
    d = small()
    s = Splits(d.subset([0, 1]), None, d.subset([2]))
    assert [name for name, _ in s] == ["train", "test"]
    assert s.n_features == 3
    other = Dataset(sp.eye(2, format="csr"), np.array([1, 1]))
    with pytest.raises(DataError, match="different feature counts"):
        Splits(d, None, other)


def test_random_split_sizes_disjoint_and_seeded() -> None:
    train, valid, test = random_split(1000, 0.2, 0.1, seed=1)
    assert (len(train), len(valid), len(test)) == (720, 80, 200)
    assert np.unique(np.concatenate([train, valid, test])).size == 1000
    assert np.all(np.diff(train) > 0)  # sorted: rows keep file order
    again = random_split(1000, 0.2, 0.1, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip((train, valid, test), again, strict=True))
    assert not np.array_equal(test, random_split(1000, 0.2, 0.1, seed=2)[2])
    assert random_split(10, 0.2, 0.0, seed=0)[1] is None


def test_split_fraction_errors() -> None:
    with pytest.raises(ConfigError, match="test_size must be in \\(0, 1\\)"):
        random_split(10, 1.0, 0.1, seed=0)
    with pytest.raises(ConfigError, match="valid_size must be in \\[0, 1\\)"):
        random_split(10, 0.2, -0.1, seed=0)
    with pytest.raises(ConfigError, match="at least one row"):
        carve(np.arange(3), 0.1, seed=0)
