"""Profile edits against an FM recommender's lists (MovieLens-100K): the chosen edits
are the exact worst case of the attacker's objective, checked against every profile."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from fmadv.estimators.fm import FMClassifier
from fmadv.recommend import Interactions
from fmadv.recommend.edits import profile_threat
from fmadv.recommend.fm import FMRecommender


@pytest.fixture(scope="module")
def recommender(data_dir_with):
    from fmadv.data import load_dataset

    splits = load_dataset(
        "movielens-100k", data_dir_with("movielens-100k"), split="u1",
        side_features=["gender", "age", "occupation"],
    )  # fmt: skip
    model = FMClassifier(n_factors=8, epochs=3, random_state=0).fit_splits(splits)
    recommender = FMRecommender(model).fit(Interactions.from_splits(splits))
    recommender.test_rows = splits.test
    return recommender


def objective(base, profile: sp.csr_matrix, user: int, top: np.ndarray) -> float:
    """Mean score of the user's other unseen items minus that of the clean top k."""
    inter = base.interactions_
    users, items = base.model.model_.side_tables(profile, inter.item_features)
    scores = (users.double() @ items.double().T).numpy()[0]
    rest = np.ones(inter.n_items, bool)
    rest[inter.seen[user].indices] = False
    rest[top] = False
    return float(scores[rest].mean() - scores[top].mean())


@pytest.mark.parametrize("budget", [1, 2])
def test_the_edits_are_the_worst_case_of_the_objective(recommender, budget):
    inter = recommender.interactions_
    threat = profile_threat(inter, budget)
    assert len(threat.choices) == 3 and not threat.toggles  # gender, age, occupation
    edited = recommender.under_attack(threat, k=10)
    profiles = edited.edited_profiles()
    fields = threat.choices
    for user in (0, 17, 400):
        top = recommender.recommend([user], k=10)[0][0]
        x = inter.user_features[user].toarray()[0]
        best = -np.inf
        for chosen in itertools.chain.from_iterable(
            itertools.combinations(fields, b) for b in range(budget + 1)
        ):
            for values in itertools.product(*[range(size) for _, size in chosen]):
                y = x.copy()
                for (offset, size), value in zip(chosen, values, strict=True):
                    y[offset : offset + size] = 0
                    y[offset + value] = 1
                best = max(best, objective(recommender, sp.csr_matrix(y), user, top))
        got = objective(recommender, profiles[user], user, top)
        assert got == pytest.approx(best, rel=1e-9, abs=1e-9)
        changed = sum(
            (profiles[user, o : o + s].toarray() != x[o : o + s]).any() for o, s in fields
        )
        assert changed <= budget


def test_profile_edits_give_stability_columns(recommender):
    from fmadv.recommend.compare import compare_topk

    inter = recommender.interactions_
    attacks = {f"edits {b}": profile_threat(inter, b) for b in (1, 3)}
    comparison = compare_topk(
        {"fm": recommender}, inter, recommender.test_rows, k=10, attacks=attacks
    )
    row = comparison.models.loc["fm"]
    assert 0 <= row["stability edits 3"] <= row["stability edits 1"] < 1
    # A list the attack changed is never certified.
    changed = comparison.per_user["fm"]["stability edits 1"] < 1
    certified = comparison.per_user["fm"]["certified edits 1"]
    assert not certified[changed].any()
    assert 0 <= row["certified edits 3"] <= row["certified edits 1"] <= 1 - changed.mean()


def test_push_never_beats_brute_force_and_the_certificate_never_fails(recommender):
    from fmadv.recommend.edits import push

    inter = recommender.interactions_
    threat = profile_threat(inter, 3)
    fields = threat.choices
    rng = np.random.default_rng(0)
    checked = 0
    for user in rng.choice(inter.n_users, 6, replace=False):
        unseen = np.flatnonzero(inter.seen[user].toarray()[0] == 0)
        top = set(recommender.recommend([user], k=10)[0][0])
        for item in rng.choice([i for i in unseen if i not in top], 3, replace=False):
            result = push(recommender, int(user), int(item), threat, k=10)
            exact = _fewest_edits(recommender, int(user), int(item), fields, unseen)
            assert result.at_least <= (exact if exact is not None else 4)
            if result.edits is not None:
                assert exact is not None and result.edits >= exact
                assert item in recommender_top(recommender, result.profile, unseen)
            checked += exact is not None
    assert checked > 0  # some targets can be pushed in


def recommender_top(recommender, profile, unseen, k=10):
    fm, inter = recommender.model.model_, recommender.interactions_
    users, items = fm.side_tables(profile, inter.item_features)
    scores = (users.double() @ items.double().T).numpy()[0]
    scores[np.setdiff1d(np.arange(len(scores)), unseen)] = -np.inf
    return set(np.argsort(-scores)[:k])


def _fewest_edits(recommender, user, item, fields, unseen):
    """The least number of changed fields that brings the item into the top 10."""
    x = recommender.interactions_.user_features[user].toarray()[0]
    for budget in range(len(fields) + 1):
        for chosen in itertools.combinations(fields, budget):
            for values in itertools.product(*[range(size) for _, size in chosen]):
                y = x.copy()
                for (offset, size), value in zip(chosen, values, strict=True):
                    y[offset : offset + size] = 0
                    y[offset + value] = 1
                if item in recommender_top(recommender, sp.csr_matrix(y), unseen):
                    return budget
    return None


@pytest.mark.parametrize("k", [1, 10])
def test_the_list_radius_is_the_fewest_edits_that_change_the_list(recommender, k):
    """Against every profile with at most 3 changed fields: the radius is exact."""
    from fmadv.recommend.edits import list_radius

    inter, fm = recommender.interactions_, recommender.model.model_
    threat = profile_threat(inter, 3)
    users = np.array([0, 17, 400, 911, 5])
    radius = list_radius(recommender, users, threat, k)
    _, items = recommender.tables()
    for user, got in zip(users, radius, strict=True):
        x = inter.user_features[user].toarray()[0]
        profiles, changed_fields = [], []
        for chosen in itertools.chain.from_iterable(
            itertools.combinations(threat.choices, b) for b in range(4)
        ):
            for values in itertools.product(*[range(size) for _, size in chosen]):
                y = x.copy()
                for (offset, size), value in zip(chosen, values, strict=True):
                    y[offset : offset + size] = 0
                    y[offset + value] = 1
                profiles.append(y)
                changed_fields.append(sum((y != x)[o : o + s].any() for o, s in threat.choices))
        scores = fm.user_table(sp.csr_matrix(np.array(profiles))).double() @ items.double().T
        scores[:, inter.seen[user].indices] = -np.inf
        tops = [frozenset(row) for row in scores.topk(k, 1).indices.tolist()]
        moved = [b for b, top in zip(changed_fields, tops, strict=True) if top != tops[0]]
        assert got == min(moved, default=threat.budget + 1)
