"""Uniformly random rankings, the floor every model must clear."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from fmadv.recommend.baselines.base import Baseline, check_seed, register


@register
class RandomRecommender(Baseline):
    """Uniformly random rankings, fixed per user: the floor every model must clear.

    Each user's scores are a random permutation of ``1..n_items`` divided by
    ``n_items``, drawn from a generator seeded with ``(random_state, user)``: distinct
    scores, reproducible, and independent of which users are scored together.

    Parameters
    ----------
    random_state
        Seed (an integer >= 0), or None for a fresh one drawn in :meth:`fit`.

    Attributes
    ----------
    seed_
        The seed in use.
    """

    name = "random"

    def __init__(self, random_state: int | None = 0) -> None:
        self.random_state = random_state

    def _learn(self, liked: sp.csr_matrix) -> None:
        check_seed(self.random_state)
        if self.random_state is None:
            self.seed_ = int(np.random.SeedSequence().generate_state(1)[0])
        else:
            self.seed_ = int(self.random_state)
        self.n_items_ = liked.shape[1]

    def _user_scores(self, users: np.ndarray) -> np.ndarray:
        scores = np.empty((len(users), self.n_items_))
        for row, user in enumerate(users):
            rng = np.random.default_rng([self.seed_, int(user)])
            scores[row] = (rng.permutation(self.n_items_) + 1) / self.n_items_
        return scores
