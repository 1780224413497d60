"""Item-based nearest neighbours on cosine similarity (implicit library)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from implicit.nearest_neighbours import CosineRecommender

from fmadv.recommend.baselines.base import Baseline, check_int, quiet_implicit, register

# Scale of the popularity term that breaks ties between item-kNN scores. Below any
# non-zero cosine score (a sum of similarities c / sqrt(n_i n_j) >= 1 / n_users) while
# there are fewer than 10 million users, so it only orders items whose scores are equal,
# chiefly the zeros of items outside every neighbourhood of the user's items.
_KNN_TIE_SCALE = 1e-7


@register
class ItemKNN(Baseline):
    """Item-based nearest neighbours on cosine similarity, from the implicit library.

    Sarwar, Karypis, Konstan and Riedl, "Item-Based Collaborative Filtering
    Recommendation Algorithms", WWW 2001; Deshpande and Karypis, "Item-Based Top-N
    Recommendation Algorithms", TOIS 2004. implicit's ``CosineRecommender`` keeps, for
    each item, its ``neighbours`` most cosine-similar items (over the users who liked them); a
    user's score for item j is the sum of the similarities
    ``similarity_[i, j]`` over the items i the user liked. Ties (chiefly the zero score of
    items outside every neighbourhood of the user's items) go to the more popular item,
    through a term below 1e-7. Users who liked nothing get the popularity scores.

    Parameters
    ----------
    neighbours
        Neighbours kept per item.

    Attributes
    ----------
    model_
        The fitted implicit model.
    similarity_
        (n_items x n_items) CSR, row i = the neighbours of item i.
    """

    name = "itemknn"
    cold_fallback = True
    tuning_grid = {"neighbours": (10, 25, 50, 100, 200, 400, 800)}

    def __init__(self, neighbours: int = 50) -> None:
        self.neighbours = neighbours

    def _learn(self, liked: sp.csr_matrix) -> None:
        check_int("neighbours", self.neighbours, 1)
        with quiet_implicit():
            model = CosineRecommender(K=int(self.neighbours))
            model.fit(liked, show_progress=False)
        self.model_ = model
        self.similarity_ = sp.csr_matrix(model.similarity, dtype=np.float64)
        self.liked_ = liked
        order = np.argsort(-self.popularity_, kind="stable")
        rank = np.empty(len(order), dtype=np.float64)
        rank[order] = np.arange(len(order))
        n_items = len(order)
        self.tie_break_ = _KNN_TIE_SCALE * (n_items - rank) / n_items

    def _user_scores(self, users: np.ndarray) -> np.ndarray:
        # Each row of a sparse product only reads its own row, so batching cannot change it.
        scores = (self.liked_[users] @ self.similarity_).toarray()
        return scores + self.tie_break_
