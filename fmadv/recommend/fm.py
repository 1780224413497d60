"""Ranking with a trained factorization machine, without one input row per (user, item).

With the features split into a user part x_u and an item part x_i (x = x_u + x_i),

    y_hat(x) = [b + <w, x_u> + pair(x_u)] + [<w, x_i> + pair(x_i)] + <x_u V, x_i V>,

where pair(z) = 1/2 (||z V||^2 - z^2 ||V||^2) are the interactions inside one side. So
all scores of a block of users are a user vector, an item vector and one
(users x k) @ (k x items) product (:meth:`FactorizationMachine.side_tables`), and the
base class finds each user's top k by an exact search of the two tables
(:mod:`fmadv.mips`).
"""

from __future__ import annotations

import numpy as np
import torch

from fmadv.attacks.base import Attack
from fmadv.attacks.core import adversarial_scores
from fmadv.data.interactions import Interactions
from fmadv.errors import ConfigError
from fmadv.estimators.fm import FMClassifier
from fmadv.recommend.base import Recommender
from fmadv.recommend.edits import EditedFMRecommender
from fmadv.sparse import PairBatch
from fmadv.threat import EditThreat

# (user, item) rows attacked at once: the users of a block times the catalogue.
ROWS_PER_CALL = 1 << 18


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

    def tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_fitted()
        return self.user_table_, self.item_table_

    def under_attack(self, attack: Attack | EditThreat, k: int = 10) -> Recommender:
        """The users' profiles attacked: an input attack, or whole-feature edits."""
        if isinstance(attack, EditThreat):
            return EditedFMRecommender(self, attack, k).fit()
        return AttackedFMRecommender(self, attack, k).fit()


class AttackedFMRecommender(Recommender):
    """An FM recommender whose users' profiles are attacked to break their own lists.

    Each user's features (every feature of the user's fields, in the unit box) move
    once, for all items alike: what a user, or whoever edits the user's profile, can do.
    The attack raises the mean score of the rest of the user's unseen catalogue against
    the mean score of the user's clean top ``k``. The score gap between two items is
    linear in the user's features (the user's own terms cancel), so this objective is
    linear too, and its sign step (FGSM) is the exact worst point of the box for it.
    The clean recommender must be fitted; its interactions are reused.

    Parameters
    ----------
    base
        The fitted FM recommender.
    attack
        Any attack on inputs: FGSM and the L2 step in closed form, the others on the
        users' dense features.
    k
        Length of the list the attack targets.
    """

    def __init__(self, base: FMRecommender, attack: Attack, k: int = 10):
        self.base = base
        self.attack = attack
        self.k = k
        self.name = f"{base.name} under {attack.name} eps={attack.eps}"

    def _fit(self, interactions) -> None:
        self.base._check_fitted()

    def fit(self, interactions=None) -> AttackedFMRecommender:
        """Reuse the base recommender's interactions (``interactions`` is ignored)."""
        self.interactions_ = self.base.interactions_
        return self

    def score(self, user_ids: np.ndarray, items: np.ndarray | None = None) -> torch.Tensor:
        self._check_fitted()
        inter = self.interactions_
        fm = self.base.model.model_
        users = np.atleast_1d(np.asarray(user_ids, dtype=np.int64))
        weights = self._demotion_weights(users)
        n_items = inter.n_items
        block = max(1, ROWS_PER_CALL // n_items)
        scores = []
        for start in range(0, len(users), block):
            chunk = users[start : start + block]
            batch = PairBatch(
                inter.user_features[chunk], inter.item_features,
                np.repeat(np.arange(len(chunk)), n_items), np.tile(np.arange(n_items), len(chunk)),
                inter.user_columns, fm.bias.device,
            )  # fmt: skip
            labels = weights[start : start + block].reshape(-1).to(fm.bias.device)
            with torch.no_grad():
                attacked = adversarial_scores(fm, batch, labels, _demotion, self.attack)
            scores.append(attacked.reshape(len(chunk), n_items))
        scores = torch.cat(scores) if scores else torch.zeros(0, n_items)
        return scores if items is None else scores[:, torch.as_tensor(np.asarray(items))]

    def _demotion_weights(self, users: np.ndarray) -> torch.Tensor:
        """1/k on each user's clean top k, -1/(the rest) on its other unseen items."""
        top_ids, _ = self.base.recommend(users, k=min(self.k, self.interactions_.n_items))
        rows, slots = np.nonzero(top_ids >= 0)
        top = torch.zeros(len(users), self.interactions_.n_items, dtype=torch.bool)
        top[torch.from_numpy(rows), torch.from_numpy(top_ids[rows, slots])] = True
        rest = torch.from_numpy(self.interactions_.seen[users].toarray() == 0) & ~top
        weights = top / top.sum(1, keepdim=True).clamp_min(1)
        return weights - rest / rest.sum(1, keepdim=True).clamp_min(1)


def _demotion(scores: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The attacker's gain per row: -weight * score (top items down, the rest up)."""
    return -weights * scores
