"""Bayesian personalized ranking (implicit library)."""

from __future__ import annotations

import scipy.sparse as sp
from implicit.cpu.bpr import BayesianPersonalizedRanking

from fmadv.errors import ConfigError
from fmadv.recommend.baselines.base import (
    FactorBaseline,
    check_float,
    check_int,
    check_seed,
    register,
)


@register
class BPR(FactorBaseline):
    """Bayesian personalized ranking, from the implicit library.

    Rendle, Freudenthaler, Gantner and Schmidt-Thieme, "BPR: Bayesian Personalized
    Ranking from Implicit Feedback", UAI 2009, trained by SGD on (user, liked item,
    sampled other item) triples by :class:`implicit.cpu.bpr.BayesianPersonalizedRanking`.
    The score of item i for user u is ``user_factors_[u] @ item_factors_[i]``; the last
    column of ``item_factors_`` is the item bias and the users' last column is 1. Users
    who liked nothing get the popularity scores.

    Training runs on one thread: implicit's multithreaded SGD updates shared factors
    without locks, so its result depends on how the threads interleave and the same
    ``random_state`` would not give the same model twice.

    Parameters
    ----------
    factors
        Latent dimension (plus one bias column).
    learning_rate
        SGD step size.
    regularization
        L2 penalty on the factors.
    iterations
        Epochs over the positive pairs.
    random_state
        Seed of the initial factors and of the sampling (an integer >= 0, or None).

    Attributes
    ----------
    model_
        The fitted implicit model.
    user_factors_, item_factors_
        float32 arrays (n_users x factors + 1) and (n_items x factors + 1).
    """

    name = "bpr"
    tuning_grid = {
        "factors": (32, 64, 128),
        "learning_rate": (0.003, 0.01, 0.03),
        "regularization": (0.001, 0.01, 0.1),
    }

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        iterations: int = 100,
        random_state: int | None = 0,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.random_state = random_state

    def _implicit_model(self, liked: sp.csr_matrix):
        check_int("factors", self.factors, 1)
        check_float("learning_rate", self.learning_rate, positive=True)
        check_float("regularization", self.regularization, positive=False)
        check_int("iterations", self.iterations, 1)
        check_seed(self.random_state)
        if liked.nnz == 0:
            raise ConfigError("BPR needs at least one liked (user, item) pair")
        return BayesianPersonalizedRanking(
            factors=int(self.factors),
            learning_rate=float(self.learning_rate),
            regularization=float(self.regularization),
            iterations=int(self.iterations),
            num_threads=1,  # lock-free parallel SGD is not reproducible
            random_state=self.random_state,
        )
