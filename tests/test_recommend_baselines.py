import dataclasses
import warnings
from math import comb

import implicit.utils
import numpy as np
import pytest
import scipy.sparse as sp

from fmadv.data import make_synthetic
from fmadv.errors import ConfigError
from fmadv.recommend import Interactions, Recommender
from fmadv.recommend.baselines import (
    ALS,
    BASELINES,
    BPR,
    ItemKNN,
    Popularity,
    RandomRecommender,
    make_baseline,
    popularity_scores,
)
from tests.recommender_contract import RecommenderContract, interactions  # noqa: F401

# Small settings: the contract and the comparisons below need a working model, not a good one.
FAST = {
    "als": {"factors": 8, "iterations": 5},
    "bpr": {"factors": 8, "iterations": 30},
    "itemknn": {"neighbours": 20},
}


def _contract(name: str) -> type:
    """The recommender contract for a registered baseline, with small settings."""

    def make(self):
        return make_baseline(name, **FAST.get(name, {}))

    return type(f"TestContract_{name}", (RecommenderContract,), {"make": make})


# Every registered baseline, a new one included, runs the whole contract.
for _name in BASELINES:
    globals()[f"TestContract_{_name}"] = _contract(_name)


# -- popularity ---------------------------------------------------------------------


def test_popularity_order_is_the_liked_counts(interactions):  # noqa: F811
    model = Popularity().fit(interactions)
    counts = np.asarray((interactions.liked != 0).sum(axis=0)).ravel()
    scores = model.score(np.array([0, 5])).numpy()
    assert np.array_equal(scores[0], scores[1])  # the same list for everyone
    np.testing.assert_array_equal(np.floor(scores[0]), counts)
    # Most liked first; equal counts in index order, with distinct scores.
    expected = np.lexsort((np.arange(interactions.n_items), -counts))
    ids, _ = model.recommend([0], k=interactions.n_items, filter_seen=False)
    np.testing.assert_array_equal(ids[0], expected)
    assert len(np.unique(scores[0])) == interactions.n_items


def test_popularity_scores_break_ties_by_index():
    liked = sp.csr_matrix(np.array([[1, 0, 1, 1], [0, 0, 1, 1], [1, 0, 0, 0]], np.float32))
    scores = popularity_scores(liked)
    assert list(np.floor(scores)) == [2, 0, 2, 2]
    assert list(np.argsort(-scores, kind="stable")) == [0, 2, 3, 1]


# -- random -------------------------------------------------------------------------


def test_random_depends_on_the_seed_only(interactions):  # noqa: F811
    users = np.arange(interactions.n_users)
    a = RandomRecommender(random_state=0).fit(interactions).score(users)
    b = RandomRecommender(random_state=0).fit(interactions).score(users[::-1])
    c = RandomRecommender(random_state=1).fit(interactions).score(users)
    np.testing.assert_array_equal(a.numpy(), b.numpy()[::-1])
    assert not np.array_equal(a.numpy(), c.numpy())
    # Each user's scores are distinct, and users get different orders.
    assert all(len(np.unique(row)) == interactions.n_items for row in a.numpy())
    assert not np.array_equal(a[0].numpy().argsort(), a[1].numpy().argsort())
    fresh = RandomRecommender(random_state=None).fit(interactions)
    np.testing.assert_array_equal(fresh.score(users[:3]).numpy(), fresh.score(users[:3]).numpy())


# -- a planted problem: learned models must beat chance on held-out positives ---------


@pytest.fixture(scope="module")
def planted():
    splits = make_synthetic(n_users=200, n_items=100, n_rows=8000, seed=3)
    inter = Interactions.from_splits(splits)
    held_out = inter.matrix(splits.test, splits.test.y > 0)
    users = np.flatnonzero(np.diff(held_out.indptr) > 0)
    return inter, held_out, users


def hit_rate(model, inter, held_out, users, k=10):
    ids, _ = model.fit(inter).recommend(users, k=k)
    return np.mean(
        [np.isin(held_out[u].indices, row).any() for u, row in zip(users, ids, strict=True)]
    )


def chance_hit_rate(inter, held_out, users, k=10):
    """Expected hit rate of a uniformly random list over the unseen items."""
    unseen = inter.n_items - np.diff(inter.seen.indptr)[users]
    positives = np.diff(held_out.indptr)[users]
    return np.mean(
        [1 - comb(m - h, k) / comb(m, k) for m, h in zip(unseen, positives, strict=True)]
    )


def test_random_hits_at_chance_rate(planted):
    chance = chance_hit_rate(*planted)
    rates = [hit_rate(RandomRecommender(random_state=seed), *planted) for seed in range(3)]
    assert abs(np.mean(rates) - chance) < 0.05


@pytest.mark.parametrize("name", ["popularity", "als", "bpr", "itemknn"])
def test_learned_baselines_beat_random(name, planted):
    model = make_baseline(name, **FAST.get(name, {}))
    chance = chance_hit_rate(*planted)  # about 0.47 here; the models reach 0.59 to 0.68
    random = hit_rate(RandomRecommender(random_state=0), *planted)
    assert hit_rate(model, *planted) > max(chance, random) + 0.08


# -- cold users ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["als", "bpr", "itemknn"])
def test_cold_users_get_the_popularity_ranking(name, interactions):  # noqa: F811
    liked = interactions.liked.tolil()
    liked[[0, 7]] = 0
    cold = dataclasses.replace(interactions, liked=sp.csr_matrix(liked))
    model = make_baseline(name, **FAST[name]).fit(cold)
    popularity = Popularity().fit(cold)
    np.testing.assert_array_equal(model.cold_users_, np.isin(np.arange(cold.n_users), [0, 7]))
    np.testing.assert_array_equal(model.score([0, 7]).numpy(), popularity.score([0, 7]).numpy())
    ids, _ = model.recommend([0, 3, 7], k=10)
    expected, _ = popularity.recommend([0, 3, 7], k=10)
    np.testing.assert_array_equal(ids[[0, 2]], expected[[0, 2]])
    assert not np.array_equal(model.score([3]).numpy(), popularity.score([3]).numpy())


# -- behaviour of the implicit wrappers ---------------------------------------------


def test_factor_models_use_their_seed(interactions):  # noqa: F811
    for cls in (ALS, BPR):
        options = FAST[cls.name]
        a = cls(**options, random_state=0).fit(interactions)
        b = cls(**options, random_state=1).fit(interactions)
        assert not np.array_equal(a.user_factors_, b.user_factors_)
        # The scores are the factor products.
        expected = a.user_factors_[:4].astype(np.float64) @ a.item_factors_.T.astype(np.float64)
        np.testing.assert_allclose(a.score(np.arange(4)).numpy(), expected, rtol=1e-6)


def test_item_knn_scores_sum_the_neighbour_similarities(interactions):  # noqa: F811
    model = ItemKNN(neighbours=5).fit(interactions)
    assert model.similarity_.shape == (interactions.n_items, interactions.n_items)
    assert np.all(np.diff(model.similarity_.indptr) <= 5)
    user = 2
    expected = interactions.liked[user].toarray() @ model.similarity_.toarray()
    np.testing.assert_allclose(model.score([user]).numpy(), expected, atol=2e-7)


def test_fitting_is_silent(interactions, monkeypatch):  # noqa: F811
    # implicit checks the BLAS threads once per process; make it look again.
    monkeypatch.setattr(implicit.utils, "_checked_blas_config", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name, options in FAST.items():
            make_baseline(name, **options).fit(interactions)


# -- registry and parameters --------------------------------------------------------


def test_registry_builds_every_baseline():
    assert set(BASELINES) == {"popularity", "random", "als", "bpr", "itemknn"}
    for name, cls in BASELINES.items():
        model = make_baseline(name)
        assert type(model) is cls and isinstance(model, Recommender) and model.name == name
    als = make_baseline("als", factors=4, random_state=3)
    assert (als.factors, als.random_state, als.iterations) == (4, 3, 15)


def test_unknown_names_and_options_are_listed():
    with pytest.raises(ConfigError, match=r"unknown baseline 'nope'.*'als'.*'random'"):
        make_baseline("nope")
    with pytest.raises(ConfigError, match=r"unknown option.*'factor'.*known: \['factors'"):
        make_baseline("als", factor=8)


def test_params_round_trip():
    model = BPR(factors=4, learning_rate=0.05)
    params = model.get_params()
    assert params == {
        "factors": 4,
        "learning_rate": 0.05,
        "regularization": 0.01,
        "iterations": 100,
        "random_state": 0,
    }
    assert BPR(**params).get_params() == params
    assert model.set_params(iterations=3) is model and model.iterations == 3
    with pytest.raises(ConfigError, match="unknown parameter"):
        model.set_params(alpha=1.0)
    assert Popularity().get_params() == {}
    assert repr(ItemKNN()) == "ItemKNN(neighbours=50)"


@pytest.mark.parametrize(
    "model",
    [
        ALS(factors=0),
        ALS(iterations=1.5),
        ALS(confidence=0),
        ALS(regularization=-1),
        BPR(learning_rate=float("nan")),
        BPR(random_state=-1),
        ItemKNN(neighbours=0),
        RandomRecommender(random_state="x"),
    ],
    ids=repr,
)
def test_bad_hyperparameters_fail_at_fit(model, interactions):  # noqa: F811
    with pytest.raises(ConfigError, match="must be"):
        model.fit(interactions)
