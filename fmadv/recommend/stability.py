"""Top-k lists under attack: how much of a ranking survives FGSM on its input rows."""

from __future__ import annotations

import numpy as np
import torch

from fmadv.attacks.base import Attack
from fmadv.attacks.core import adversarial_scores
from fmadv.losses import logistic
from fmadv.recommend.base import Recommender
from fmadv.recommend.fm import FMRecommender
from fmadv.sparse import SparseBatch

ROWS_PER_CALL = 8192


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


def stability(
    base: FMRecommender, attack: Attack, user_ids, k: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clean lists, attacked lists, per-user overlap |A and A_adv| / k)."""
    attacked = AttackedFMRecommender(base, attack).fit()
    clean_ids, _ = base.recommend(user_ids, k=k)
    adv_ids, _ = attacked.recommend(user_ids, k=k)
    shared = [len(set(a[a >= 0]) & set(b[b >= 0])) for a, b in zip(clean_ids, adv_ids, strict=True)]
    return clean_ids, adv_ids, np.asarray(shared, dtype=np.float64) / k
