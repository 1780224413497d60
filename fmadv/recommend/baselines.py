"""Baseline recommenders: popularity, random, and the implicit library's ALS, BPR and item-kNN.

Every baseline learns from :attr:`Interactions.liked` (the positive training pairs, CSR,
rows = users) and ranks through :meth:`Recommender.recommend`, so its lists can be set
beside the FM's. Conventions shared by all of them:

- Deterministic: the same hyperparameters (``random_state`` included) give the same
  scores on the CPU, and a user's scores do not depend on the batch it is scored in.
- Users who liked nothing in training ("cold" users) get :class:`Popularity`'s scores
  from the models that learn a per-user profile (ALS, BPR, item-kNN): their profile is
  empty, and their scores would otherwise be constant or noise.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp
import threadpoolctl
import torch
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
from implicit.nearest_neighbours import CosineRecommender
from implicit.utils import ParameterWarning

from fmadv.errors import ConfigError
from fmadv.recommend.base import Recommender
from fmadv.recommend.interactions import Interactions

# Scale of the popularity term that breaks ties between item-kNN scores. Below any
# non-zero cosine score (a sum of similarities c / sqrt(n_i n_j) >= 1 / n_users) while
# there are fewer than 10 million users, so it only orders items whose scores are equal,
# chiefly the zeros of items outside every neighbourhood of the user's items.
_KNN_TIE_SCALE = 1e-7


class _Baseline(Recommender):
    """Shared machinery: parameters, popularity, cold-user fallback, float32 scores."""

    #: Give users with an empty ``liked`` row the popularity scores.
    cold_fallback: bool = False

    # -- scikit-learn conventions ---------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [name for name in signature.parameters if name != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The hyperparameters, by name (as passed to ``__init__``)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> _Baseline:
        """Set hyperparameters by name; returns self."""
        known = self._param_names()
        for name, value in params.items():
            if name not in known:
                raise ConfigError(f"unknown parameter {name!r} of {type(self).__name__}: {known}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self.get_params().items())
        return f"{type(self).__name__}({shown})"

    # -- fitting and scoring --------------------------------------------------------
    def _fit(self, interactions: Interactions) -> None:
        liked = sp.csr_matrix(interactions.liked, dtype=np.float32, copy=True)
        liked.eliminate_zeros()
        self.popularity_ = popularity_scores(liked)
        self.cold_users_ = np.diff(liked.indptr) == 0
        self._learn(liked)

    def _learn(self, liked: sp.csr_matrix) -> None:
        """Learn the model's state from the positive pairs (explicit zeros removed)."""

    def _user_scores(self, users: np.ndarray) -> np.ndarray:
        """(len(users) x n_items) float64 scores over the whole catalogue."""
        raise NotImplementedError

    def score(self, user_ids: np.ndarray, items: np.ndarray | None = None) -> torch.Tensor:
        """Scores of ``items`` (default: every item) for each user; higher is better.

        Parameters
        ----------
        user_ids
            User indices.
        items
            Item indices; default: the whole catalogue.

        Returns
        -------
        torch.Tensor
            float32, shape (len(user_ids), n_items) or (len(user_ids), len(items)).
        """
        self._check_fitted()
        users = np.atleast_1d(np.asarray(user_ids, dtype=np.int64))
        scores = self._user_scores(users)
        if self.cold_fallback:
            cold = self.cold_users_[users]
            scores[cold] = self.popularity_
        if items is not None:
            scores = scores[:, np.asarray(items, dtype=np.int64)]
        return torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32))


def popularity_scores(liked: sp.spmatrix) -> np.ndarray:
    """How many users liked each item, plus a tie-break that favours lower item indices.

    Parameters
    ----------
    liked
        (n_users x n_items) matrix of positive pairs; only its non-zero pattern counts.

    Returns
    -------
    numpy.ndarray
        float64, length n_items: ``count + (n_items - index) / (2 n_items)``. The added
        term lies in (0, 1/2], so the order of the counts is kept, ``floor(score)`` is the
        count, and items with equal counts get distinct scores (``torch.topk`` is not
        stable, and ties would make a list depend on how the candidates are cut).
    """
    liked = sp.csr_matrix(liked)
    n_items = liked.shape[1]
    counts = np.bincount(liked.indices[liked.data != 0], minlength=n_items)
    tie = (n_items - np.arange(n_items)) / (2 * n_items)
    return counts + tie


@contextlib.contextmanager
def _quiet_implicit() -> Iterator[None]:
    """Run implicit's CPU code without its BLAS-threads warning or its CSR nagging.

    implicit warns when OpenBLAS/MKL run their own threadpool, which slows its solvers
    down; limiting BLAS to one thread while it fits is the remedy it recommends. Its
    cosine model converts its own normalised COO matrix to CSR and warns about that.
    """
    with threadpoolctl.threadpool_limits(1, "blas"), warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Method expects CSR input", category=ParameterWarning
        )
        yield


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_float(name: str, value: Any, positive: bool) -> None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not (number > 0 if positive else number >= 0) or number == float("inf"):
        bound = "> 0" if positive else ">= 0"
        raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}")


def _check_seed(value: Any) -> None:
    if value is not None:
        _check_int("random_state", value, 0)


def _factor_scores(user_factors: np.ndarray, item_factors: np.ndarray) -> np.ndarray:
    """``user_factors @ item_factors.T``, accumulated in float64.

    In float32 the result for one user depends on the batch around it (torch picks a
    matrix-vector kernel for one row and a blocked matrix product for many, which round
    differently); accumulated in float64 and then rounded to float32, they agree.
    """
    users = torch.from_numpy(np.ascontiguousarray(user_factors, dtype=np.float64))
    items = torch.from_numpy(np.ascontiguousarray(item_factors, dtype=np.float64))
    return (users @ items.T).numpy()


class Popularity(_Baseline):
    """Most-popular items first: the same list for everyone, minus what each has seen.

    The score of an item is the number of users who liked it in training, plus a
    tie-break below 1/2 that favours the lower item index (see :func:`popularity_scores`).

    Attributes
    ----------
    popularity_
        float64 scores per item.
    """

    name = "popularity"

    def __init__(self) -> None:
        pass

    def _user_scores(self, users: np.ndarray) -> np.ndarray:
        return np.tile(self.popularity_, (len(users), 1))


class RandomRecommender(_Baseline):
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
        _check_seed(self.random_state)
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


class ALS(_Baseline):
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
    alpha
        Confidence weight of a positive pair.
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
    cold_fallback = True

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        iterations: int = 15,
        alpha: float = 1.0,
        random_state: int | None = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.iterations = iterations
        self.alpha = alpha
        self.random_state = random_state

    def _learn(self, liked: sp.csr_matrix) -> None:
        _check_int("factors", self.factors, 1)
        _check_float("regularization", self.regularization, positive=False)
        _check_int("iterations", self.iterations, 1)
        _check_float("alpha", self.alpha, positive=True)
        _check_seed(self.random_state)
        with _quiet_implicit():
            model = AlternatingLeastSquares(
                factors=int(self.factors),
                regularization=float(self.regularization),
                alpha=float(self.alpha),
                iterations=int(self.iterations),
                random_state=self.random_state,
            )
            model.fit(liked, show_progress=False)
        self.model_ = model
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)

    def _user_scores(self, users: np.ndarray) -> np.ndarray:
        return _factor_scores(self.user_factors_[users], self.item_factors_)


class BPR(_Baseline):
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
    cold_fallback = True

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

    def _learn(self, liked: sp.csr_matrix) -> None:
        _check_int("factors", self.factors, 1)
        _check_float("learning_rate", self.learning_rate, positive=True)
        _check_float("regularization", self.regularization, positive=False)
        _check_int("iterations", self.iterations, 1)
        _check_seed(self.random_state)
        if liked.nnz == 0:
            raise ConfigError("BPR needs at least one liked (user, item) pair")
        with _quiet_implicit():
            model = BayesianPersonalizedRanking(
                factors=int(self.factors),
                learning_rate=float(self.learning_rate),
                regularization=float(self.regularization),
                iterations=int(self.iterations),
                num_threads=1,  # lock-free parallel SGD is not reproducible
                random_state=self.random_state,
            )
            model.fit(liked, show_progress=False)
        self.model_ = model
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)

    def _user_scores(self, users: np.ndarray) -> np.ndarray:
        return _factor_scores(self.user_factors_[users], self.item_factors_)


class ItemKNN(_Baseline):
    """Item-based nearest neighbours on cosine similarity, from the implicit library.

    Sarwar, Karypis, Konstan and Riedl, "Item-Based Collaborative Filtering
    Recommendation Algorithms", WWW 2001; Deshpande and Karypis, "Item-Based Top-N
    Recommendation Algorithms", TOIS 2004. implicit's ``CosineRecommender`` keeps, for
    each item, its ``k`` most cosine-similar items (over the users who liked them); a
    user's score for item j is the sum of the similarities
    ``similarity_[i, j]`` over the items i the user liked. Ties (chiefly the zero score of
    items outside every neighbourhood of the user's items) go to the more popular item,
    through a term below 1e-7. Users who liked nothing get the popularity scores.

    Parameters
    ----------
    k
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

    def __init__(self, k: int = 50) -> None:
        self.k = k

    def _learn(self, liked: sp.csr_matrix) -> None:
        _check_int("k", self.k, 1)
        with _quiet_implicit():
            model = CosineRecommender(K=int(self.k))
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


BASELINES: dict[str, type[_Baseline]] = {
    cls.name: cls for cls in (Popularity, RandomRecommender, ALS, BPR, ItemKNN)
}


def make_baseline(name: str, **options: Any) -> Recommender:
    """An unfitted baseline by registry name, with hyperparameters ``options``.

    Parameters
    ----------
    name
        One of :data:`BASELINES`: ``"popularity"``, ``"random"``, ``"als"``, ``"bpr"``,
        ``"itemknn"``.
    **options
        Keyword arguments of the class's ``__init__``.

    Raises
    ------
    ConfigError
        For an unknown name or option; the message lists the known ones.
    """
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; expected one of {sorted(BASELINES)}")
    cls = BASELINES[name]
    known = cls._param_names()
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} of baseline {name!r}; known: {known}")
    return cls(**options)


__all__ = [
    "ALS",
    "BASELINES",
    "BPR",
    "ItemKNN",
    "Popularity",
    "RandomRecommender",
    "make_baseline",
    "popularity_scores",
]
