import dataclasses
import math
import types

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fmadv.cli import app
from fmadv.data import make_synthetic
from fmadv.errors import ConfigError
from fmadv.estimators.fm import FMClassifier
from fmadv.recommend import Interactions
from fmadv.recommend import tuning as tuning_module
from fmadv.recommend.baselines import BASELINES, make_baseline
from fmadv.recommend.tuning import grid_size, relevant_pairs, tune, tuning_summary, tuning_table
from fmadv.runs.data import recorded_splits

runner = CliRunner()
TUNABLE = sorted(name for name, cls in BASELINES.items() if cls.tuning_grid)
# Short training: the tests need models that differ across the grid, not good ones.
QUICK = {"als": {"iterations": 3}, "bpr": {"iterations": 20}, "itemknn": {}}


@pytest.fixture(scope="module")
def problem():
    splits = make_synthetic(n_users=80, n_items=50, n_rows=3000, seed=4)
    interactions = Interactions.from_splits(splits)
    return splits, interactions, relevant_pairs(interactions, splits.valid)


@pytest.fixture(scope="module")
def full(problem):
    """Every tunable baseline tuned over its whole grid."""
    _, interactions, valid = problem
    return {
        name: tune(name, interactions, valid, k=5, budget_seconds=math.inf, defaults=QUICK[name])
        for name in TUNABLE
    }


def scored(result):
    """What a tuning run found, without its timings."""
    return [(trial.params, trial.ndcg) for trial in result.trials]


def test_the_learned_baselines_declare_grids_and_the_floors_none():
    assert set(TUNABLE) == {"als", "bpr", "itemknn"}
    assert not BASELINES["popularity"].tuning_grid and not BASELINES["random"].tuning_grid


@pytest.mark.parametrize("name", TUNABLE)
def test_every_grid_names_parameters_of_its_baseline(name):
    cls = BASELINES[name]
    assert set(cls.tuning_grid) <= set(cls._get_param_names())
    assert "random_state" not in cls.tuning_grid  # the seed is not a hyperparameter
    for values in cls.tuning_grid.values():
        assert len(values) == len(set(values)) >= 2
    # Every extreme of the grid passes the model's own checks.
    make_baseline(name, **{key: values[0] for key, values in cls.tuning_grid.items()})
    make_baseline(name, **{key: values[-1] for key, values in cls.tuning_grid.items()})


@pytest.mark.parametrize("name", TUNABLE)
def test_tuning_never_loses_to_the_defaults(full, name):
    result = full[name]
    untuned = make_baseline(name, **QUICK[name]).get_params()
    assert result.default.params == untuned
    assert result.best_ndcg == max(trial.ndcg for trial in result.trials) >= result.default.ndcg
    assert len(result.trials) == grid_size(result.grid, untuned)  # the whole grid, once each
    assert len({tuple(sorted(t.params.items())) for t in result.trials}) == len(result.trials)


def test_the_chosen_point_scores_the_same_when_refitted(problem, full):
    _, interactions, valid = problem
    result = full["als"]
    again = tune("als", interactions, valid, k=5, budget_seconds=0, defaults=result.best_params)
    assert again.default.params == result.best_params
    assert again.default.ndcg == result.best_ndcg


def test_a_spent_budget_still_tries_the_defaults(problem):
    _, interactions, valid = problem
    result = tune("itemknn", interactions, valid, k=5, budget_seconds=0)
    assert [trial.params for trial in result.trials] == [{"neighbours": 50}]
    assert result.best_params == {"neighbours": 50}


def test_no_point_starts_after_the_budget(problem, monkeypatch):
    """A clock that only moves while a model is fitted, one second a fit."""
    _, interactions, valid = problem
    now = [0.0]

    def fitted(name, **params):
        now[0] += 1.0
        return make_baseline(name, **params)

    monkeypatch.setattr(tuning_module, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    monkeypatch.setattr(tuning_module, "make_baseline", fitted)
    # Points start at 0, 1 and 2 seconds; the fourth would start at 3 > 2.5.
    result = tune("itemknn", interactions, valid, k=5, budget_seconds=2.5)
    assert len(result.trials) == 3
    assert all(trial.seconds == 1.0 for trial in result.trials)


def test_a_short_budget_is_kept_on_the_real_clock(problem):
    _, interactions, valid = problem
    budget = 0.2
    result = tune("bpr", interactions, valid, k=5, budget_seconds=budget, defaults=QUICK["bpr"])
    # Every point but the last started before the budget was spent.
    assert sum(trial.seconds for trial in result.trials[:-1]) < budget


def test_the_order_depends_on_the_seed_only(problem):
    _, interactions, valid = problem

    def tried(seed):
        result = tune("bpr", interactions, valid, k=5, budget_seconds=math.inf, seed=seed,
                      defaults=QUICK["bpr"])  # fmt: skip
        return scored(result)

    first = tried(0)
    assert tried(0) == first
    other = tried(1)
    assert [p for p, _ in other][1:] != [p for p, _ in first][1:]
    assert all(params["random_state"] == 1 for params, _ in other)


def test_the_test_split_is_never_read(problem):
    """Tuning on data whose test split has no relevant row changes nothing."""
    splits, interactions, valid = problem
    test = splits.test
    blank = dataclasses.replace(test, y=-np.ones_like(test.y))
    blanked = Interactions.from_splits(dataclasses.replace(splits, test=blank))
    for name in ("itemknn", "bpr"):
        seen = tune(name, interactions, valid, k=5, budget_seconds=math.inf, defaults=QUICK[name])
        unseen = tune(name, blanked, relevant_pairs(blanked, splits.valid), k=5,
                      budget_seconds=math.inf, defaults=QUICK[name])  # fmt: skip
        assert scored(seen) == scored(unseen)


def test_tables(full):
    table = tuning_table(full)
    assert len(table) == sum(len(result.trials) for result in full.values())
    assert (table.groupby("baseline")["chosen"].sum() == 1).all()
    chosen = table[table["chosen"]].set_index("baseline")
    assert chosen.loc["itemknn", "valid_ndcg"] == full["itemknn"].best_ndcg
    assert pd.isna(chosen.loc["itemknn", "factors"])  # not a hyperparameter of item-kNN
    summary = tuning_summary(full).set_index("baseline")
    assert (
        summary.loc["itemknn", "chosen"]
        == f"neighbours={full['itemknn'].best_params['neighbours']}"
    )
    assert summary.loc["als", "tried"] == "45 of 45"
    assert summary.loc["als", "chosen"].count("=") == 3


def test_errors(problem):
    splits, interactions, valid = problem
    with pytest.raises(ConfigError, match="nothing to tune"):
        tune("popularity", interactions, valid)
    with pytest.raises(ConfigError, match="unknown baseline"):
        tune("nonsense", interactions, valid)
    with pytest.raises(ConfigError, match="random_state=3, but the seed is 0"):
        tune("als", interactions, valid, defaults={"random_state": 3})
    with pytest.raises(ConfigError, match="unknown option"):
        tune("als", interactions, valid, defaults={"neighbours": 3})
    with pytest.raises(ConfigError, match="validation split"):
        relevant_pairs(interactions, None)
    negative = dataclasses.replace(splits.valid, y=-np.ones_like(splits.valid.y))
    with pytest.raises(ConfigError, match="no relevant"):
        relevant_pairs(interactions, negative)


def test_cli_compare_topk_tune(tmp_path):
    model = tmp_path / "fm" / "model.safetensors"
    result = runner.invoke(app, ["train", "--epochs", "1", "--quiet", "--out", str(model.parent)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["compare-topk", str(model), "popularity", "itemknn", "-k", "5",
                                 "--out", str(out), "--stability-users", "5", "--tune",
                                 "--tune-budget", "60"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "tuned on validation" in result.output and "neighbours=" in result.output
    trials = pd.read_csv(out / "tuning.csv")
    assert set(trials["baseline"]) == {"itemknn"}  # popularity has nothing to tune
    assert len(trials) == len(BASELINES["itemknn"].tuning_grid["neighbours"])
    assert trials["chosen"].sum() == 1
    assert trials.loc[trials["chosen"], "valid_ndcg"].item() == trials["valid_ndcg"].max()
    # The figures are those of the model's validation split.
    splits = recorded_splits(FMClassifier.load(model), None)[2]
    interactions = Interactions.from_splits(splits)
    valid = relevant_pairs(interactions, splits.valid)
    direct = tune("itemknn", interactions, valid, k=5, budget_seconds=math.inf)
    assert trials["valid_ndcg"].tolist() == [trial.ndcg for trial in direct.trials]
    assert "tuned on validation" in (out / "report.md").read_text()

    plain = tmp_path / "plain"
    result = runner.invoke(app, ["compare-topk", str(model), "itemknn", "-k", "5", "--out",
                                 str(plain), "--stability-users", "5"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not (plain / "tuning.csv").exists()
