"""Ranking with a trained factorization machine, without one input row per (user, item).

With the features split into a user part x_u and an item part x_i (x = x_u + x_i),

    y_hat(x) = [b + <w, x_u> + pair(x_u)] + [<w, x_i> + pair(x_i)] + <x_u V, x_i V>,

where pair(z) = 1/2 (||z V||^2 - z^2 ||V||^2) are the interactions inside one side. So
all scores of a block of users are a user vector, an item vector and one
(users x k) @ (k x items) product (:meth:`FactorizationMachine.side_tables`); top-k
selection follows in the base class.
"""

from __future__ import annotations

import numpy as np
import torch

from fmadv.attacks.base import Attack
from fmadv.attacks.core import adversarial_scores
from fmadv.data.interactions import Interactions
from fmadv.errors import ConfigError
from fmadv.estimators.fm import FMClassifier
from fmadv.losses import logistic
from fmadv.recommend.base import Recommender
from fmadv.sparse import SparseBatch

ROWS_PER_CALL = 8192


class FMRecommender(Recommender):
    """Top-k recommendation from a fitted :class:`~fmadv.estimators.fm.FMClassifier`.

    ``fit`` does not train the FM: it checks that the model and the interactions share
    one feature space and precomputes each user's and item's part of the score.

    Parameters
    ----------
    model
        A fitted classifier (its ``feature_map_``, when it has one, must equal the
        interactions' feature map).
    name
        Label in reports.
    """

    predicts_preference = True

    def __init__(self, model: FMClassifier, name: str = "fm"):
        self.model = model
        self.name = name

    def _fit(self, interactions: Interactions) -> None:
        model = self.model
        if interactions.user_features is None:
            raise ConfigError("the FM recommender needs a dataset with a feature map")
        if interactions.context_fields:
            raise ConfigError(
                "the FM recommender ranks items for users, but the fields "
                f"{', '.join(interactions.context_fields)} depend on the context of each "
                "interaction; score full rows with `fmadv predict` instead"
            )
        saved = getattr(model, "feature_map_", None)
        if saved is not None and saved != interactions.feature_map:
            raise ConfigError(f"{self.name} was trained on a different feature map than this data")
        if model.n_features_in_ != interactions.feature_map.n_features:
            raise ConfigError(
                f"{self.name} expects {model.n_features_in_} features, the data has "
                f"{interactions.feature_map.n_features}"
            )
        self.user_table_, self.item_table_ = model.model_.side_tables(
            interactions.user_features, interactions.item_features
        )

    @torch.no_grad()
    def score(self, user_ids: np.ndarray, items: np.ndarray | None = None) -> torch.Tensor:
        self._check_fitted()
        device = self.user_table_.device
        users = torch.as_tensor(np.asarray(user_ids, dtype=np.int64), device=device)
        item_table = self.item_table_
        if items is not None:
            item_table = item_table[
                torch.as_tensor(np.asarray(items, dtype=np.int64), device=device)
            ]
        return self.user_table_[users] @ item_table.T

    def under_attack(self, attack: Attack) -> AttackedFMRecommender:
        return AttackedFMRecommender(self, attack).fit()


class AttackedFMRecommender(Recommender):
    """An FM recommender whose every (user, item) row is attacked before scoring.

    There is no label for an unseen item, so each row is attacked against the model's own
    prediction (sign of its score) under the logistic loss: every score is pushed towards
    the decision boundary, top items down and bottom items up, which is what disturbs a
    ranking most. The clean recommender must be fitted; its interactions are reused.

    Parameters
    ----------
    base
        The fitted FM recommender.
    attack
        FGSM, L2 step or APR, as in training.
    """

    def __init__(self, base: FMRecommender, attack: Attack):
        self.base = base
        self.attack = attack
        self.name = f"{base.name} under {attack.name} eps={attack.eps}"

    def _fit(self, interactions) -> None:
        self.base._check_fitted()

    def fit(self, interactions=None) -> AttackedFMRecommender:
        """Reuse the base recommender's interactions (``interactions`` is ignored)."""
        self.interactions_ = self.base.interactions_
        return self

    @torch.no_grad()
    def score(self, user_ids: np.ndarray, items: np.ndarray | None = None) -> torch.Tensor:
        self._check_fitted()
        inter = self.interactions_
        fm = self.base.model.model_
        items = np.arange(inter.n_items) if items is None else np.asarray(items, dtype=np.int64)
        users = np.asarray(user_ids, dtype=np.int64)
        pairs_user = np.repeat(users, len(items))
        pairs_item = np.tile(items, len(users))
        scores = []
        for start in range(0, len(pairs_user), ROWS_PER_CALL):
            part = slice(start, start + ROWS_PER_CALL)
            rows = inter.user_features[pairs_user[part]] + inter.item_features[pairs_item[part]]
            batch = SparseBatch(rows, fm.bias.device)
            clean = fm(batch)
            labels = torch.where(clean >= 0, 1.0, -1.0).to(clean.dtype)
            scores.append(adversarial_scores(fm, batch, labels, logistic, self.attack, clean=clean))
        return torch.cat(scores).reshape(len(users), len(items))
