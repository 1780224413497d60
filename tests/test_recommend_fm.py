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


def test_attacked_scores_equal_the_attack_on_full_rows(classifier, interactions):
    import torch

    from fmadv.attacks import FGSM, adversarial_scores
    from fmadv.losses import logistic
    from fmadv.recommend.fm import AttackedFMRecommender
    from fmadv.recommend.stability import stability
    from fmadv.sparse import SparseBatch

    base = FMRecommender(classifier).fit(interactions)
    attack = FGSM(0.05)
    attacked = AttackedFMRecommender(base, attack).fit().score(np.array([3, 9])).numpy()
    items = np.arange(interactions.n_items)
    for row, user in enumerate([3, 9]):
        full = interactions.user_features[[user] * len(items)] + interactions.item_features[items]
        batch = SparseBatch(full)
        with torch.no_grad():
            clean = classifier.model_(batch)
            labels = torch.where(clean >= 0, 1.0, -1.0)
            expected = adversarial_scores(classifier.model_, batch, labels, logistic, attack)
        np.testing.assert_allclose(attacked[row], expected.numpy(), rtol=1e-5, atol=1e-5)
        # Scores are pushed towards (and across) the boundary: the margin with respect to
        # the model's own sign drops on average (a single step may overshoot on some rows).
        sign = np.sign(clean.numpy())
        assert np.mean(sign * attacked[row]) < np.mean(np.abs(clean.numpy())) - 0.1
    _, _, overlap = stability(base, FGSM(0.0), np.arange(10), k=5)
    assert np.all(overlap == 1.0)  # no attack, same lists
    _, _, overlap = stability(base, FGSM(0.3), np.arange(10), k=5)
    assert overlap.mean() < 1.0
