import numpy as np
import pytest
import torch

from fmadv.errors import ConfigError, DataError, ModelFileError
from fmadv.estimators.fm import FMClassifier
from fmadv.training.loop import TrainConfig
from tests.fm_helpers import planted_problem

FAST = {"epochs": 8, "batch_size": 256, "lr": 0.05}


def split(X, y, n_train=5000):
    return (X[:n_train], y[:n_train]), (X[n_train:], y[n_train:])


def test_learns_a_planted_problem_well_above_chance():
    (Xt, yt), (Xv, yv) = split(*planted_problem())
    model = FMClassifier(n_factors=4, **FAST).fit(Xt, yt, eval_set=(Xv, yv))
    scores = model.decision_function(Xv)
    accuracy = np.mean(np.where(scores > 0, 1, -1) == yv)
    assert accuracy > 0.8, accuracy
    assert model.history_.best_value > 0.85  # validation AUC


@pytest.mark.parametrize("optimizer", ["adam", "adagrad", "sgd"])
def test_same_seed_same_model(optimizer):
    X, y = planted_problem(n_rows=1500)
    options = {**FAST, "epochs": 2, "optimizer": optimizer, "lr": 0.05}
    a = FMClassifier(n_factors=3, random_state=7, **options).fit(X, y)
    b = FMClassifier(n_factors=3, random_state=7, **options).fit(X, y)
    c = FMClassifier(n_factors=3, random_state=8, **options).fit(X, y)
    for name in ("bias", "linear", "factors"):
        assert torch.equal(getattr(a.model_, name), getattr(b.model_, name))
    assert not torch.equal(a.model_.factors, c.model_.factors)


def test_early_stopping_restores_the_best_epoch(tmp_path):
    (Xt, yt), (Xv, yv) = split(*planted_problem())
    # A huge learning rate makes validation AUC wander, so later epochs are often worse.
    model = FMClassifier(n_factors=4, epochs=12, batch_size=512, lr=0.5, patience=2)
    model.fit(Xt, yt, eval_set=(Xv, yv), log_path=tmp_path / "log.jsonl")
    records = model.history_.records
    best = max(r["valid_auc"] for r in records)
    assert model.history_.best_value == best
    restored = model.decision_function(Xv)
    from fmadv.metrics.classification import auc

    assert auc(yv, restored) == pytest.approx(best)
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert len(lines) == len(records)
    assert len(records) < 12 or records[-1]["valid_auc"] == best


def test_save_and_load_predict_the_same(tmp_path):
    X, y = planted_problem(n_rows=1000)
    model = FMClassifier(n_factors=3, **{**FAST, "epochs": 1}).fit(X, y)
    path = tmp_path / "model.safetensors"
    model.save(path)
    loaded = FMClassifier.load(path)
    np.testing.assert_array_equal(loaded.decision_function(X), model.decision_function(X))
    assert loaded.get_params() == model.get_params()
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temp file left


def test_truncated_or_foreign_model_files_are_rejected(tmp_path):
    X, y = planted_problem(n_rows=500)
    path = tmp_path / "model.safetensors"
    FMClassifier(n_factors=2, **{**FAST, "epochs": 1}).fit(X, y).save(path)
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="not a readable model file"):
        FMClassifier.load(tmp_path / "cut.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError):
        FMClassifier.load(tmp_path / "junk.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(ModelFileError, match="not an fmadv model"):
        FMClassifier.load(tmp_path / "other.safetensors")
    with pytest.raises(ModelFileError, match="no such model file"):
        FMClassifier.load(tmp_path / "missing.safetensors")


def test_bad_rows_and_labels_are_rejected():
    X, y = planted_problem(n_rows=100)
    with pytest.raises(DataError, match="has '2'"):
        FMClassifier().fit(X, np.where(y > 0, 2.0, -1.0))
    real = X.copy()
    real.data[0] = 0.5
    with pytest.raises(DataError, match="allow_real_valued"):
        FMClassifier().fit(real, y)
    bad = X.copy()
    bad.data[0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        FMClassifier().fit(bad, y)
    fitted = FMClassifier(**{**FAST, "epochs": 1}).fit(X, y)
    with pytest.raises(DataError, match="model expects 100"):
        fitted.decision_function(X[:, :50])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"lr": -1.0}, "lr must be a positive"),
        ({"optimizer": "rmsprop"}, "unknown optimizer"),
        ({"reg_factors": -0.1}, "reg_factors must be >= 0"),
        ({"loss": "cubic"}, "unknown loss"),
        ({"momentum": -0.5}, "momentum must be >= 0"),
    ],
)
def test_bad_hyperparameters_fail_before_training(options, message):
    with pytest.raises(ConfigError, match=message):
        FMClassifier(**options).validate()


def test_unknown_hyperparameters_are_refused():
    # Explicit parameters: an unknown one is a TypeError at construction, as in
    # scikit-learn, and a ConfigError naming it in set_params.
    with pytest.raises(TypeError, match="nesterov"):
        FMClassifier(nesterov=True)
    with pytest.raises(ConfigError, match="unknown parameter 'nesterov'"):
        FMClassifier().set_params(nesterov=True)


def test_get_and_set_params_round_trip():
    model = FMClassifier(n_factors=5, lr=0.1)
    params = model.get_params()
    assert params["n_factors"] == 5 and params["lr"] == 0.1
    clone = FMClassifier(**params)
    assert clone.get_params() == params
    clone.set_params(n_factors=9, epochs=3)
    assert clone.get_params()["n_factors"] == 9 and clone.train_config().epochs == 3
    assert params["loss"] == TrainConfig().loss == "logistic"  # one place owns defaults
