"""What every baseline shares, and the registry baselines add themselves to.

A baseline is one module of this package: a :class:`Baseline` subclass with a ``name``,
decorated with :func:`register`. Every module here is imported with the package, so a
new one is in :data:`BASELINES`, the ``compare-topk`` command and the recommender
contract tests without any other change.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import threadpoolctl
import torch
from implicit.utils import ParameterWarning

from fmadv import checks
from fmadv.data.interactions import Interactions
from fmadv.errors import ConfigError
from fmadv.estimators.base import Estimator
from fmadv.recommend.base import Recommender


class Baseline(Estimator, Recommender):
    """Shared machinery: parameters, popularity, cold-user fallback, float32 scores."""

    #: Give users with an empty ``liked`` row the popularity scores.
    cold_fallback: bool = False
    #: Hyperparameter name -> values worth trying on validation
    #: (:func:`fmadv.recommend.tuning.tune`); empty for a model with nothing to tune.
    tuning_grid: ClassVar[Mapping[str, tuple[Any, ...]]] = {}

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
def quiet_implicit() -> Iterator[None]:
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


def check_int(name: str, value: Any, low: int) -> None:
    checks.integer(name, value, low)


def check_float(name: str, value: Any, positive: bool) -> None:
    (checks.positive if positive else checks.nonnegative)(name, value)


def check_seed(value: Any) -> None:
    if value is not None:
        check_int("random_state", value, 0)


def factor_scores(user_factors: np.ndarray, item_factors: np.ndarray) -> np.ndarray:
    """``user_factors @ item_factors.T``, accumulated in float64.

    In float32 the result for one user depends on the batch around it (torch picks a
    matrix-vector kernel for one row and a blocked matrix product for many, which round
    differently); accumulated in float64 and then rounded to float32, they agree.
    """
    users = torch.from_numpy(np.ascontiguousarray(user_factors, dtype=np.float64))
    items = torch.from_numpy(np.ascontiguousarray(item_factors, dtype=np.float64))
    return (users @ items.T).numpy()


class FactorBaseline(Baseline):
    """A baseline whose implicit model learns user and item factors; the score of item i
    for user u is ``user_factors_[u] @ item_factors_[i]``, and users who liked nothing
    get the popularity scores."""

    cold_fallback = True

    def _implicit_model(self, liked: sp.csr_matrix):
        """The unfitted implicit model, after checking the hyperparameters."""
        raise NotImplementedError

    def _learn(self, liked: sp.csr_matrix) -> None:
        with quiet_implicit():
            model = self._implicit_model(liked)
            model.fit(liked, show_progress=False)
        self.model_ = model
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)

    def _user_scores(self, users: np.ndarray) -> np.ndarray:
        return factor_scores(self.user_factors_[users], self.item_factors_)


BASELINES: dict[str, type[Baseline]] = {}


def register(cls: type[Baseline]) -> type[Baseline]:
    """Class decorator: add a baseline to :data:`BASELINES` under its ``name``."""
    if not cls.name or cls.name in BASELINES:
        raise ValueError(f"baseline {cls.__name__} needs a unique name, got {cls.name!r}")
    BASELINES[cls.name] = cls
    return cls


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
    known = cls._get_param_names()
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} of baseline {name!r}; known: {known}")
    return cls(**options)
