import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fmadv.attacks import FGSM
from fmadv.cli import app
from fmadv.data import make_synthetic
from fmadv.estimators.fm import FMClassifier
from fmadv.recommend import Interactions
from fmadv.recommend.baselines import Popularity, RandomRecommender
from fmadv.recommend.compare import compare_topk, write_report
from fmadv.recommend.fm import FMRecommender

runner = CliRunner()


@pytest.fixture(scope="module")
def setting():
    splits = make_synthetic(n_users=80, n_items=50, n_rows=3000, seed=4)
    inter = Interactions.from_splits(splits)
    model = FMClassifier(n_factors=4, epochs=4, batch_size=256, lr=0.05).fit(
        splits.train.X, splits.train.y
    )
    return splits, inter, model


def test_a_model_compared_with_itself(setting, tmp_path):
    splits, inter, model = setting
    recommenders = {
        "fm": FMRecommender(model, "fm").fit(inter),
        "fm again": FMRecommender(model, "fm again").fit(inter),
        "popularity": Popularity().fit(inter),
        "random": RandomRecommender().fit(inter),
    }
    attacks = {"none": FGSM(0.0), "strong": FGSM(0.5)}
    result = compare_topk(
        recommenders, inter, splits.test, k=5, attacks=attacks, stability_users=30
    )
    same = result.pairs[(result.pairs.a == "fm") & (result.pairs.b == "fm again")].iloc[0]
    assert same.overlap == 1.0 and same.jaccard == 1.0 and same.rbo == pytest.approx(1.0)
    assert same.kendall_tau == pytest.approx(1.0)
    assert same.only_a_items == 0 and same.only_b_items == 0
    assert same.share_b_lower_own == 0.0 and same.share_b_lower_judged == 0.0
    models = result.models
    assert models.loc["fm", "stability none"] == 1.0
    assert models.loc["fm", "stability strong"] < 1.0
    assert np.isnan(models.loc["popularity", "stability none"])  # not an FM
    assert models.loc["popularity", "hit_rate"] > models.loc["random", "hit_rate"]
    assert 0 < models.loc["random", "coverage"] <= 1
    assert result.judge == "fm"
    written = write_report(result, tmp_path, title="synthetic")
    assert {p.name for p in written} == {
        "report.md", "models.csv", "pairs.csv", "report.json", "overlap.png", "metrics.png"
    }  # fmt: skip
    report = (tmp_path / "report.md").read_text()
    assert "## What each model alone suggests" in report and "| fm again |" in report
    assert json.loads((tmp_path / "report.json").read_text())["k"] == 5


def test_cli_recommend_and_compare(tmp_path):
    runs = {}
    for name, extra in (("plain", []), ("adv", ["--beta", "0.5", "--alpha", "0.01"])):
        out = tmp_path / name
        result = runner.invoke(
            app, ["train", "--epochs", "2", "--quiet", "--out", str(out), *extra]
        )
        assert result.exit_code == 0, result.output
        runs[name] = out / "model.safetensors"

    result = runner.invoke(app, ["recommend", str(runs["plain"]), "--users", "3,5", "-k", "4",
                                 "--output", str(tmp_path / "r.json")])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "r.json").read_text())
    assert len(rows) == 8 and {r["user_id"] for r in rows} == {3, 5}
    assert [r["rank"] for r in rows[:4]] == [1, 2, 3, 4]

    out = tmp_path / "cmp"
    result = runner.invoke(app, ["compare-topk", str(runs["plain"]), str(runs["adv"]), "popularity",
                                 "random", "-k", "5", "--out", str(out), "--alphas", "0,0.01",
                                 "--stability-users", "20", "--seed-control"])  # fmt: skip
    assert result.exit_code == 0, result.output
    pairs = pd.read_csv(out / "pairs.csv")
    assert len(pairs) == 6  # the 6 pairs of 4 models
    assert "stability fgsm all 0" in (out / "models.csv").read_text()
    # Each FM against itself on the next seed: the overlap chance alone leaves.
    models = pd.read_csv(out / "models.csv", index_col=0)
    assert 0 < models.loc["plain", "seed_overlap"] < 1
    assert np.isnan(models.loc["popularity", "seed_overlap"])
    fm_pair = pairs[(pairs.a == "plain") & (pairs.b == "adv")].iloc[0]
    assert fm_pair.seed_overlap == pytest.approx(models.seed_overlap[["plain", "adv"]].mean())
    assert pairs.seed_overlap.isna().sum() == 5


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["recommend", "MODEL", "--users", "123456"], "unknown user id"),
        (["recommend", "MODEL", "--output", "x.txt"], "--output must end in"),
        (["recommend", "MODEL", "-k", "0"], "k must lie"),
        (["compare-topk", "MODEL", "nonsense"], "neither a model file nor a baseline"),
        (["compare-topk", "popularity"], "at least one FM model file"),
        (["compare-topk", "MODEL", "--alphas", "0.5,x"], "--eps-grid"),
    ],
)
def test_cli_bad_arguments(tmp_path, args, fragment):
    model = tmp_path / "m" / "model.safetensors"
    result = runner.invoke(app, ["train", "--epochs", "1", "--quiet", "--out", str(model.parent)])
    assert result.exit_code == 0
    result = runner.invoke(app, [str(model) if a == "MODEL" else a for a in args])
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr


def test_models_trained_on_other_data_are_refused(tmp_path):
    paths = []
    for seed in (0, 1):
        out = tmp_path / f"s{seed}"
        result = runner.invoke(app, ["train", "--epochs", "1", "--quiet", "--seed", str(seed),
                                     "--out", str(out)])  # fmt: skip
        assert result.exit_code == 0
        paths.append(str(out / "model.safetensors"))
    result = runner.invoke(app, ["compare-topk", *paths])
    assert result.exit_code == 2 and "different data" in result.stderr
