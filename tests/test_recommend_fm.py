import numpy as np
import pytest

from fmadv.data import make_synthetic
from fmadv.errors import ConfigError
from fmadv.estimators.fm import FMClassifier
from fmadv.recommend import Interactions
from fmadv.recommend.fm import FMRecommender
from tests.recommender_contract import RecommenderContract


@pytest.fixture(scope="module")
def classifier():
    splits = make_synthetic(n_users=60, n_items=40, n_rows=1500, seed=1)
    model = FMClassifier(n_factors=6, epochs=3, batch_size=256, lr=0.05, random_state=0)
    return model.fit(splits.train.X, splits.train.y)


class TestFMRecommender(RecommenderContract):
    @pytest.fixture(autouse=True)
    def _model(self, classifier):
        self.classifier = classifier

    def make(self):
        return FMRecommender(self.classifier)


def test_scores_equal_full_rows_one_by_one(classifier, interactions):
    recommender = FMRecommender(classifier).fit(interactions)
    users = np.array([0, 7, 31])
    items = np.arange(interactions.n_items)
    scores = recommender.score(users).numpy()
    for row, user in enumerate(users):
        full = interactions.user_features[[user] * len(items)] + interactions.item_features[items]
        np.testing.assert_allclose(
            scores[row], classifier.decision_function(full), rtol=1e-5, atol=1e-5
        )


def test_other_feature_space_is_rejected(classifier):
    other = Interactions.from_splits(make_synthetic(n_users=30, n_items=20, n_rows=400, seed=2))
    with pytest.raises(ConfigError, match="expects"):
        FMRecommender(classifier).fit(other)


def test_context_fields_are_refused(data_dir_with):
    from fmadv.data import load_dataset

    shared_data_dir = data_dir_with("frappe", "frappe.validation.libfm", "frappe.test.libfm")
    splits = load_dataset("frappe", shared_data_dir, train_from="validation")
    inter = Interactions.from_splits(splits)
    model = FMClassifier(n_factors=2, epochs=1).fit(splits.train.X[:100], splits.train.y[:100])
    with pytest.raises(ConfigError, match="depend on the context"):
        FMRecommender(model).fit(inter)


class TestAttackedFMRecommender(RecommenderContract):
    @pytest.fixture(autouse=True)
    def _model(self, classifier, interactions):
        self.base = FMRecommender(classifier).fit(interactions)

    def make(self):
        from fmadv.attacks import FGSM
        from fmadv.recommend.fm import AttackedFMRecommender

        return AttackedFMRecommender(self.base, FGSM(0.05))


def test_the_profile_attack_equals_autograd_on_the_users_dense_features(classifier, interactions):
    """Each user's features move once for the whole catalogue, by the sign of the
    gradient of (mean score of the rest - mean score of the clean top k), inside the
    box, on the user's fields only: the reference builds every (user, item) row dense."""
    import torch

    from fmadv.attacks import FGSM
    from fmadv.recommend.fm import AttackedFMRecommender
    from fmadv.recommend.stability import stability

    base = FMRecommender(classifier).fit(interactions)
    eps, k = 0.05, 5
    attacked = AttackedFMRecommender(base, FGSM(eps), k).fit().score(np.array([3, 9]))
    fm = classifier.model_
    items = torch.from_numpy(interactions.item_features.toarray())
    movable = torch.zeros(items.shape[1], dtype=torch.bool)
    movable[interactions.user_columns] = True
    for row, user in enumerate([3, 9]):
        profile = torch.from_numpy(interactions.user_features[user].toarray())
        with torch.no_grad():
            clean = fm.forward_dense(profile + items)
        unseen = ~torch.from_numpy(interactions.seen[user].toarray()[0].astype(bool))
        top = torch.zeros_like(unseen)
        top[torch.topk(clean.masked_fill(~unseen, -torch.inf), k).indices] = True
        rest = unseen & ~top
        delta = torch.zeros_like(profile, requires_grad=True)
        scores = fm.forward_dense(profile + delta + items)
        gain = scores[rest].mean() - scores[top].mean()
        (grad,) = torch.autograd.grad(gain, delta)
        moved = (profile + eps * torch.sign(grad) * movable).clamp(0, 1)
        with torch.no_grad():
            expected = fm.forward_dense(moved + items)
        np.testing.assert_allclose(attacked[row], expected, rtol=1e-5, atol=1e-5)
        # The attack closes the gap between the user's top k and the rest.
        assert expected[rest].mean() - expected[top].mean() > clean[rest].mean() - clean[top].mean()
    _, _, overlap = stability(base, FGSM(0.0), np.arange(10), k=5)
    assert np.all(overlap == 1.0)  # no attack, same lists
    _, _, overlap = stability(base, FGSM(0.3), np.arange(10), k=5)
    assert overlap.mean() < 1.0


@pytest.mark.parametrize("with_candidates", [False, True])
def test_recommend_is_the_exact_top_k_of_the_tables(classifier, interactions, with_candidates):
    recommender = FMRecommender(classifier).fit(interactions)
    users_table, items_table = (t.double().numpy() for t in recommender.tables())
    users = np.arange(interactions.n_users)
    candidates = np.arange(0, interactions.n_items, 3) if with_candidates else None
    ids, scores = recommender.recommend(users, k=5, items=candidates)
    exact = users_table @ items_table.T
    exact[interactions.seen.toarray() > 0] = -np.inf
    if with_candidates:
        exact[:, np.setdiff1d(np.arange(interactions.n_items), candidates)] = -np.inf
    want = np.argsort(-exact, axis=1, kind="stable")[:, :5]
    want_scores = np.take_along_axis(exact, want, 1)
    np.testing.assert_array_equal(ids, np.where(np.isneginf(want_scores), -1, want))
    np.testing.assert_allclose(scores, want_scores, rtol=1e-6)
