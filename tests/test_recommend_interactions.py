import numpy as np
import pytest

from fmadv.data import make_synthetic
from fmadv.errors import ConfigError
from fmadv.recommend import Interactions


def test_catalogue_fields_and_matrices():
    splits = make_synthetic(n_users=50, n_items=30, n_rows=1200, seed=2)
    inter = Interactions.from_splits(splits)
    train = splits.train
    assert inter.user_fields == ("user", "segment") and inter.item_fields == ("item", "category")
    assert inter.context_fields == ()
    # Every training pair is seen; the liked pairs are the positive ones.
    rows, cols = inter.user_index(train.user_ids), inter.item_index(train.item_ids)
    assert np.all(np.asarray(inter.seen[rows, cols]).ravel() == 1)
    liked_pairs = {(u, i) for u, i, y in zip(rows, cols, train.y, strict=True) if y > 0}
    assert inter.liked.nnz == len(liked_pairs)
    # User part + item part = the full row, for every training row.
    full = inter.user_features[rows] + inter.item_features[cols]
    assert (full != train.X).nnz == 0
    # The user's columns: every value of the user's fields, held or not.
    fmap = inter.feature_map
    expected = [fmap.index(name, value) for name in inter.user_fields
                for value in fmap.field(name).categories]  # fmt: skip
    assert inter.user_columns.tolist() == sorted(expected)
    assert np.isin(inter.user_features.indices, inter.user_columns).all()
    assert not np.isin(inter.item_features.indices, inter.user_columns).any()


def test_unknown_ids_are_named():
    inter = Interactions.from_splits(make_synthetic(n_users=20, n_items=10, n_rows=150, seed=0))
    with pytest.raises(ConfigError, match="unknown user id"):
        inter.user_index([10_000])
    with pytest.raises(ConfigError, match="unknown item id"):
        inter.item_index([-5])


def test_movielens_sides(data_dir_with):
    from fmadv.data import load_dataset

    shared_data_dir = data_dir_with("movielens-100k")
    splits = load_dataset(
        "movielens-100k", shared_data_dir, side_features=["genre", "gender", "age", "occupation"]
    )
    inter = Interactions.from_splits(splits)
    assert (inter.n_users, inter.n_items) == (943, 1682)
    assert inter.user_fields == ("user", "gender", "age", "occupation")
    assert inter.item_fields == ("item", "genre")
    assert inter.seen.nnz == splits.train.n_rows
