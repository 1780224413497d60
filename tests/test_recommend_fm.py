import numpy as np
import pytest

from fmadv.data import make_synthetic
from fmadv.errors import ConfigError
from fmadv.models.classifier import FMClassifier
from fmadv.recommend import Interactions
from fmadv.recommend.fm import FMRecommender
from tests.recommender_contract import RecommenderContract


@pytest.fixture(scope="module")
def classifier():
    splits = make_synthetic(n_users=60, n_items=40, n_rows=1500, seed=1)
    model = FMClassifier(k=6, epochs=3, batch_size=256, lr=0.05, random_state=0)
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


def test_context_fields_are_refused(shared_data_dir):
    from fmadv.data import load_dataset

    splits = load_dataset("frappe", shared_data_dir, train_from="validation")
    inter = Interactions.from_splits(splits)
    model = FMClassifier(k=2, epochs=1).fit(splits.train.X[:100], splits.train.y[:100])
    with pytest.raises(ConfigError, match="depend on the context"):
        FMRecommender(model).fit(inter)
