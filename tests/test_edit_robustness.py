"""Robustness under whole-feature edits on MovieLens-100K: the user edits their own
gender, age and occupation."""

from __future__ import annotations

import numpy as np
import pytest

from fmadv.estimators.fm import FMClassifier
from fmadv.evaluation.edits import edit_curve, edit_threat


@pytest.fixture(scope="module")
def trained(data_dir_with):
    from fmadv.data import load_dataset

    splits = load_dataset(
        "movielens-100k", data_dir_with("movielens-100k"), split="u1",
        side_features=["genre", "gender", "age", "occupation"],
    )  # fmt: skip
    model = FMClassifier(n_factors=8, epochs=3, random_state=0).fit_splits(splits)
    return model, splits


def test_flips_and_certificates_never_overlap_and_move_with_the_budget(trained):
    model, splits = trained
    rows = splits.test
    threat = edit_threat(splits.feature_map, ["gender", "age", "occupation"], 0)
    assert not threat.toggles and len(threat.choices) == 3
    curve = edit_curve(model.model_, rows.X[:3000], rows.y[:3000], threat, [0, 1, 2, 3])
    assert curve[0]["flip_rate"] == 0 and curve[0]["certified_share"] > 0.99
    for point in curve:
        # No row is both flipped by the attack and certified against every attack.
        assert point["flip_rate"] + point["certified_share"] <= 1 + 1e-12
        assert point["adversarial_error"] >= point["clean_error"] - 1e-12
        assert point["certified_accuracy"] <= 1 - point["clean_error"]
    flips = [point["flip_rate"] for point in curve]
    certified = [point["certified_share"] for point in curve]
    assert flips == sorted(flips) and flips[-1] > 0
    assert certified == sorted(certified, reverse=True)
    assert np.isclose(curve[2]["budget"], 2)


def test_training_against_edits_halves_the_flip_rate(trained):
    model, splits = trained
    fields = ("gender", "age", "occupation")
    adversarial = FMClassifier(
        n_factors=8, epochs=3, random_state=0, beta=0.5, attack="flips", budget=1,
        edit_fields=fields,
    ).fit_splits(splits)  # fmt: skip
    threat = edit_threat(splits.feature_map, fields, 1)
    rows = splits.test
    plain = edit_curve(model.model_, rows.X[:3000], rows.y[:3000], threat, [1])[0]
    robust = edit_curve(adversarial.model_, rows.X[:3000], rows.y[:3000], threat, [1])[0]
    assert robust["flip_rate"] < plain["flip_rate"] / 2
    assert robust["certified_share"] > plain["certified_share"]


def test_the_edit_objective_is_clean_plus_beta_times_the_edited_loss(trained):
    import torch

    from fmadv.losses import logistic
    from fmadv.models.fm_edits import greedy_edits
    from fmadv.sparse import SparseBatch
    from fmadv.training.objectives import EditObjective

    model, splits = trained
    rows = splits.test.X[:500]
    labels = torch.from_numpy(splits.test.y[:500]).float()
    threat = edit_threat(splits.feature_map, ["gender", "age", "occupation"], 2)
    value = EditObjective(threat, beta=0.7)(model.model_, SparseBatch(rows), labels, logistic)
    edited = greedy_edits(model.model_, rows, -labels, threat).rows
    with torch.no_grad():
        clean = logistic(model.model_(SparseBatch(rows)), labels).mean()
        attacked = logistic(model.model_(SparseBatch(edited)), labels).mean()
    torch.testing.assert_close(value.detach(), clean + 0.7 * attacked)
    assert attacked > clean  # the edits raise the loss


def test_the_certified_margin_objective_and_its_gradient(trained):
    import torch

    from fmadv.losses import logistic
    from fmadv.models.fm_edits import edit_certificate
    from fmadv.sparse import SparseBatch
    from fmadv.training.objectives import CertifiedEditObjective

    model, splits = trained
    rows = splits.test.X[:300]
    labels = torch.from_numpy(splits.test.y[:300]).float()
    threat = edit_threat(splits.feature_map, ["gender", "age", "occupation"], 2)
    fm = model.model_
    fm.zero_grad()
    value = CertifiedEditObjective(threat, beta=0.5)(fm, SparseBatch(rows), labels, logistic)
    value.backward()
    assert all(torch.isfinite(p.grad).all() for p in fm.parameters())
    differentiable = edit_certificate(fm, rows, -labels, threat, grad=True)
    assert differentiable.requires_grad
    with torch.no_grad():
        reach = differentiable.detach()
        scores = fm(SparseBatch(rows))
        certified = logistic(scores - labels * reach, labels).mean()
        want = logistic(scores, labels).mean() + 0.5 * certified
    torch.testing.assert_close(value.detach(), want)
    # The profile fields are few enough for the exact certificate, which the bound
    # never undercuts.
    exact = edit_certificate(fm, rows, -labels, threat)
    assert (reach >= exact - 1e-5).all() and (reach > exact + 1e-3).any()


def test_the_ranker_trained_against_profile_edits_keeps_more_of_its_lists(trained):
    """The ranking FM trained against one greedy edit per user (each edit raising the
    loss of all of the user's rows) loses less of its lists to one profile edit, and
    more of them are certified (exactly) against it."""
    from fmadv.estimators.ranker import FMRanker
    from fmadv.metrics.topk import overlap
    from fmadv.recommend import Interactions
    from fmadv.recommend.edits import list_radius, profile_threat
    from fmadv.recommend.fm import FMRecommender

    _, splits = trained
    fields = ("gender", "age", "occupation")
    interactions = Interactions.from_splits(splits)
    threat = profile_threat(interactions, 1, fields)
    users = np.arange(0, interactions.n_users, 5)
    options = {"n_factors": 8, "epochs": 2, "batch_size": 4096, "lr": 0.05, "n_negatives": 2}
    kept, certified = {}, {}
    for name, extra in {"plain": {}, "edits": {"beta": 0.5, "attack": "flips",
                                               "edit_fields": fields}}.items():  # fmt: skip
        ranker = FMRanker(**options, **extra, random_state=0).fit(interactions)
        recommender = FMRecommender(ranker).fit(interactions)
        clean, _ = recommender.recommend(users, k=10)
        attacked, _ = recommender.under_attack(threat, 10).recommend(users, k=10)
        kept[name] = overlap(clean, attacked).mean()
        certified[name] = (list_radius(recommender, users, threat, 10) > 1).mean()
    assert kept["edits"] > kept["plain"] and kept["plain"] < 0.95
    assert certified["edits"] > certified["plain"]


def test_the_ranker_rejects_edits_of_item_fields(trained):
    from fmadv.errors import ConfigError
    from fmadv.estimators.ranker import FMRanker

    _, splits = trained
    ranker = FMRanker(epochs=1, beta=0.5, attack="flips", edit_fields=("genre",))
    with pytest.raises(ConfigError, match="user fields"):
        ranker.fit_splits(splits)
