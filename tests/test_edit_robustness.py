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
