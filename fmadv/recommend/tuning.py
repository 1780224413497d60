"""Choose a baseline's hyperparameters on validation, so it is compared at its best.

An untuned baseline flatters whatever is set beside it (Rendle, Zhang and Koren, "On the
Difficulty of Evaluating Baselines", 2019). :func:`tune` fits a baseline at each point of
the grid it declares (:attr:`Baseline.tuning_grid`) and keeps the point with the best
NDCG@k on validation pairs, which must come from rows held out of training, never from
the test split.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fmadv.data.dataset import Dataset
from fmadv.errors import ConfigError
from fmadv.metrics.ranking import ndcg_at_k
from fmadv.recommend import Interactions, Recommender
from fmadv.recommend.baselines import BASELINES, make_baseline

#: Seconds of fitting and scoring per baseline; covers every grid on MovieLens-100K.
DEFAULT_BUDGET_SECONDS = 60.0


@dataclass(frozen=True)
class Trial:
    """One point tried: every hyperparameter of the model, its validation NDCG@k, and
    the seconds spent fitting and scoring it."""

    params: dict[str, Any]
    ndcg: float
    seconds: float


@dataclass(frozen=True)
class TuningResult:
    """What :func:`tune` tried, in order; the first trial is the untuned point."""

    name: str
    k: int
    grid: Mapping[str, tuple[Any, ...]]
    trials: tuple[Trial, ...]

    @property
    def best(self) -> Trial:
        """The trial with the highest validation NDCG; the earliest one on ties, so the
        untuned point is kept unless another point beats it."""
        return max(self.trials, key=lambda trial: trial.ndcg)

    @property
    def best_params(self) -> dict[str, Any]:
        return dict(self.best.params)

    @property
    def best_ndcg(self) -> float:
        return self.best.ndcg

    @property
    def default(self) -> Trial:
        return self.trials[0]

    def table(self) -> pd.DataFrame:
        """One row per trial: the grid's hyperparameters, ``valid_ndcg``, ``seconds``,
        and ``chosen`` (True on the best trial)."""
        best = self.trials.index(self.best)
        rows = [
            {
                "baseline": self.name,
                "trial": index,
                **{name: trial.params[name] for name in self.grid},
                "valid_ndcg": trial.ndcg,
                "seconds": trial.seconds,
                "chosen": index == best,
            }
            for index, trial in enumerate(self.trials)
        ]
        return pd.DataFrame(rows)

    def values(self, trial: Trial, separator: str = ", ") -> str:
        """A trial's values of the grid's hyperparameters, ``name=value`` each."""
        return separator.join(f"{name}={_shown(trial.params[name])}" for name in self.grid)

    def summary(self, separator: str = ", ") -> dict[str, Any]:
        """The chosen values (see :meth:`values`) and their validation NDCG beside the
        untuned point's."""
        return {
            "baseline": self.name,
            "default_ndcg": self.default.ndcg,
            "chosen_ndcg": self.best_ndcg,
            "tried": f"{len(self.trials)} of {grid_size(self.grid, self.default.params)}",
            "chosen": self.values(self.best, separator),
        }


def relevant_pairs(interactions: Interactions, split: Dataset | None) -> sp.csr_matrix:
    """(n_users x n_items) CSR of a held-out split's positive rows (label +1), the
    relevant pairs of the ranking metrics.

    Raises
    ------
    ConfigError
        When there is no split or it holds no positive row.
    """
    if split is None:
        raise ConfigError("tuning needs a validation split held out of training")
    relevant = interactions.relevant(split)
    if relevant.nnz == 0:
        raise ConfigError(f"the split {split.name!r} has no relevant (+1) rows to tune on")
    return relevant


def tune(
    name: str,
    interactions: Interactions,
    valid_relevant: sp.spmatrix,
    k: int = 10,
    budget_seconds: float = DEFAULT_BUDGET_SECONDS,
    seed: int = 0,
    defaults: Mapping[str, Any] | None = None,
) -> TuningResult:
    """Fit the baseline ``name`` at each point of its grid; keep the best on validation.

    Every point is fitted on ``interactions`` (the training pairs) and scored by
    :func:`validation_ndcg`, as :func:`fmadv.recommend.compare.compare_topk` scores the
    test split.

    Parameters
    ----------
    name
        A registered baseline with a non-empty ``tuning_grid``.
    interactions
        The training interactions.
    valid_relevant
        (n_users x n_items) relevant validation pairs (see :func:`relevant_pairs`),
        held out of training; never the test split.
    k
        List length of NDCG@k.
    budget_seconds
        No new point starts once this many seconds have passed; the untuned point is
        always tried.
    seed
        ``random_state`` of every model that has one, and the order the grid is tried
        in: shuffled, so a budget too short for the whole grid samples all of it rather
        than one corner. With a budget that covers the grid, the result depends only on
        the seed.
    defaults
        The untuned point's hyperparameters beyond the class's defaults; a
        ``random_state`` among them must equal ``seed``. The grid varies its own
        hyperparameters and keeps these for the others.

    Returns
    -------
    TuningResult
        Every trial in the order tried, the untuned point first.
    """
    grid = _grid_of(name)
    start = _start_point(name, defaults or {}, seed)
    relevant = sp.csr_matrix(valid_relevant)
    if relevant.nnz == 0:
        raise ConfigError("no user has a relevant validation pair to tune on")

    began = time.perf_counter()
    trials = [_trial(name, start, interactions, relevant, k)]
    for point in _shuffled_points(grid, start, seed):
        if time.perf_counter() - began >= budget_seconds:
            break
        trials.append(_trial(name, point, interactions, relevant, k))
    return TuningResult(name, k, grid, tuple(trials))


def validation_ndcg(model: Recommender, relevant: sp.spmatrix, k: int = 10) -> float:
    """Mean NDCG@k of a fitted model's lists over the users with a relevant pair in
    ``relevant`` (n_users x n_items), their training items left out of the lists."""
    relevant = sp.csr_matrix(relevant)
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    ids, _ = model.recommend(users, k=k)
    return float(np.nanmean(ndcg_at_k(ids, relevant[users])))


def tuning_table(results: Mapping[str, TuningResult]) -> pd.DataFrame:
    """Every trial of every baseline, one row each (columns as :meth:`TuningResult.table`;
    a hyperparameter outside a baseline's grid is empty on its rows)."""
    table = pd.concat([result.table() for result in results.values()], ignore_index=True)
    # Nullable dtypes keep integer grids integers where other baselines leave gaps.
    return table.convert_dtypes()


def tuning_summary(results: Mapping[str, TuningResult], separator: str = ", ") -> pd.DataFrame:
    """One row per baseline: validation NDCG untuned and chosen, the points tried out of
    the grid's, and the chosen values (see :meth:`TuningResult.summary`)."""
    return pd.DataFrame([result.summary(separator) for result in results.values()])


def grid_size(grid: Mapping[str, tuple[Any, ...]], start: Mapping[str, Any]) -> int:
    """Distinct points :func:`tune` can try: the grid's, plus the untuned point when it
    lies off the grid."""
    on_grid = all(start[name] in values for name, values in grid.items())
    return math.prod(len(values) for values in grid.values()) + (not on_grid)


def _grid_of(name: str) -> Mapping[str, tuple[Any, ...]]:
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; expected one of {sorted(BASELINES)}")
    grid = BASELINES[name].tuning_grid
    if not grid:
        tunable = sorted(n for n, cls in BASELINES.items() if cls.tuning_grid)
        raise ConfigError(f"baseline {name!r} has nothing to tune; tunable: {tunable}")
    return grid


def _start_point(name: str, defaults: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """Every hyperparameter of the untuned point, checked by building the model."""
    if defaults.get("random_state", seed) != seed:
        raise ConfigError(
            f"defaults set random_state={defaults['random_state']}, but the seed is {seed}: "
            "tuning seeds every model with its seed"
        )
    params = make_baseline(name, **defaults).get_params()
    if "random_state" in params:
        params["random_state"] = seed
    return params


def _shuffled_points(
    grid: Mapping[str, tuple[Any, ...]], start: Mapping[str, Any], seed: int
) -> list[dict[str, Any]]:
    """The grid's points other than the untuned one, in a seeded random order."""
    points = []
    for values in itertools.product(*grid.values()):
        point = {**start, **dict(zip(grid, values, strict=True))}
        if point != start:
            points.append(point)
    order = np.random.default_rng(seed).permutation(len(points))
    return [points[i] for i in order]


def _trial(
    name: str, params: dict[str, Any], interactions: Interactions, relevant: sp.csr_matrix, k: int
) -> Trial:
    began = time.perf_counter()
    model = make_baseline(name, **params).fit(interactions)
    ndcg = validation_ndcg(model, relevant, k)
    return Trial(params, ndcg, time.perf_counter() - began)


def _shown(value: Any) -> str:
    """A hyperparameter's value, floats in their shortest form (10.0 as 10)."""
    return f"{value:g}" if isinstance(value, float) else str(value)
