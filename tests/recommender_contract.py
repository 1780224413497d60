"""The contract every recommender keeps: a test mixin, reused by each model's tests.

A test class inherits :class:`RecommenderContract` and defines ``make(self)`` returning
an unfitted recommender. The ``interactions`` fixture is a small synthetic catalogue.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmadv.data import make_synthetic
from fmadv.errors import ConfigError
from fmadv.recommend import Interactions


@pytest.fixture(scope="session")
def interactions() -> Interactions:
    return Interactions.from_splits(make_synthetic(n_users=60, n_items=40, n_rows=1500, seed=1))


class RecommenderContract:
    K = 5

    def make(self):  # pragma: no cover - overridden
        raise NotImplementedError

    @pytest.fixture
    def fitted(self, interactions):
        model = self.make()
        assert model.fit(interactions) is model
        return model

    def test_shapes_and_non_increasing_scores(self, fitted, interactions):
        users = np.arange(interactions.n_users)
        ids, scores = fitted.recommend(users, k=self.K)
        assert ids.shape == scores.shape == (interactions.n_users, self.K)
        assert np.all(np.diff(scores, axis=1) <= 0)
        assert np.all((ids >= 0) & (ids < interactions.n_items))
        assert all(len(set(row)) == self.K for row in ids)  # no item twice in a list

    def test_batch_equals_one_by_one(self, fitted, interactions):
        users = np.arange(0, interactions.n_users, 3)
        ids, scores = fitted.recommend(users, k=self.K, batch_size=7)
        for row, user in enumerate(users):
            one_ids, one_scores = fitted.recommend(user, k=self.K)
            np.testing.assert_array_equal(one_ids[0], ids[row])
            # Ids must match exactly; scores up to float32 rounding (BLAS blocks by shape).
            np.testing.assert_allclose(one_scores[0], scores[row], rtol=1e-5, atol=1e-6)

    def test_filtered_items_are_never_returned(self, fitted, interactions):
        users = np.arange(interactions.n_users)
        ids, _ = fitted.recommend(users, k=self.K)
        seen = interactions.seen
        for user, row in zip(users, ids, strict=True):
            assert not set(row) & set(seen[user].indices)
        # With filtering off, seen items may come back; with a custom matrix, it rules.
        everything = np.ones((interactions.n_users, interactions.n_items))
        everything[:, :3] = 0
        ids, scores = fitted.recommend(users[:4], user_items=everything, k=self.K)
        assert np.all(ids[:, :3] >= 0) and np.all(ids[:, 3:] == -1)
        assert np.all(np.isneginf(scores[:, 3:]))

    def test_candidate_items_are_respected(self, fitted, interactions):
        candidates = np.arange(1, interactions.n_items, 2)
        ids, _ = fitted.recommend(np.arange(10), k=self.K, items=candidates, filter_seen=False)
        assert set(ids.ravel()) <= set(candidates)
        full_ids, full_scores = fitted.recommend(
            np.arange(10), k=interactions.n_items, filter_seen=False
        )
        # The candidate ranking is the full ranking restricted to the candidates.
        for row in range(10):
            restricted = [i for i in full_ids[row] if i in set(candidates)][: self.K]
            assert sorted(restricted) == sorted(ids[row])

    def test_bad_arguments(self, fitted, interactions):
        with pytest.raises(ConfigError, match="k must lie"):
            fitted.recommend([0], k=0)
        with pytest.raises(ConfigError, match="k must lie"):
            fitted.recommend([0], k=interactions.n_items + 1)
        with pytest.raises(ConfigError, match="user indices"):
            fitted.recommend([interactions.n_users])
        with pytest.raises(ConfigError, match="not fitted"):
            self.make().recommend([0])

    def test_scores_belong_to_the_caller(self, fitted):
        users = np.arange(5)
        first = fitted.score(users)
        expected = first.clone()
        first.fill_(-1.0)  # what recommend() does to filtered entries, in place
        torch.testing.assert_close(fitted.score(users), expected)

    def test_same_seed_same_lists(self, interactions):
        a = self.make().fit(interactions).recommend(np.arange(20), k=self.K)
        b = self.make().fit(interactions).recommend(np.arange(20), k=self.K)
        np.testing.assert_array_equal(a[0], b[0])
