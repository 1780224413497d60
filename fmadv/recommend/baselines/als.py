"""Alternating least squares for implicit feedback (implicit library)."""

from __future__ import annotations

import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares

from fmadv.recommend.baselines.base import (
    FactorBaseline,
    check_float,
    check_int,
    check_seed,
    register,
)


@register
class ALS(FactorBaseline):
    """Alternating least squares for implicit feedback, from the implicit library.

    Hu, Koren and Volinsky, "Collaborative Filtering for Implicit Feedback Datasets",
    ICDM 2008, solved with conjugate gradient (Takacs, Pilaszy and Tikk, RecSys 2011) by
    :class:`implicit.cpu.als.AlternatingLeastSquares`. The score of item i for user u is
    ``user_factors_[u] @ item_factors_[i]``; users who liked nothing get the popularity
    scores. Training is deterministic whatever the number of threads (each user's and
    each item's solve is independent of the others), so it uses every core.

    Parameters
    ----------
    factors
        Latent dimension.
    regularization
        L2 penalty on the factors.
    iterations
        Alternating sweeps (users then items).
    confidence
        Confidence weight of a positive pair (implicit's ``alpha``).
    random_state
        Seed of the initial factors (an integer >= 0, or None).

    Attributes
    ----------
    model_
        The fitted implicit model.
    user_factors_, item_factors_
        float32 arrays (n_users x factors) and (n_items x factors).
    """

    name = "als"
    # implicit does not scale the penalty by how many items a user liked, so its useful
    # size depends on the data's density: the grid spans four decades.
    tuning_grid = {
        "factors": (32, 64, 128),
        "regularization": (0.01, 0.1, 1.0, 10.0, 100.0),
        "confidence": (1.0, 10.0, 40.0),
    }

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        iterations: int = 15,
        confidence: float = 1.0,
        random_state: int | None = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.iterations = iterations
        self.confidence = confidence
        self.random_state = random_state

    def _implicit_model(self, liked: sp.csr_matrix):
        check_int("factors", self.factors, 1)
        check_float("regularization", self.regularization, positive=False)
        check_int("iterations", self.iterations, 1)
        check_float("confidence", self.confidence, positive=True)
        check_seed(self.random_state)
        return AlternatingLeastSquares(
            factors=int(self.factors),
            regularization=float(self.regularization),
            alpha=float(self.confidence),
            iterations=int(self.iterations),
            random_state=self.random_state,
        )
