"""The FM trained to rank: negatives, the group loss, learning a planted preference,
model files, the closed-form attack on the group loss, and the command."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from typer.testing import CliRunner

from fmadv.attacks import FGSM, L2Step
from fmadv.cli import app
from fmadv.data.dataset import Splits
from fmadv.data.features import frame_to_dataset
from fmadv.data.interactions import Interactions
from fmadv.errors import ConfigError
from fmadv.estimators import FMClassifier, FMEstimator, FMRanker
from fmadv.losses import GROUP_LOSSES, bpr, loss_direction, softmax
from fmadv.metrics.ranking import ndcg_at_k
from fmadv.recommend.baselines import Popularity
from fmadv.recommend.fm import FMRecommender
from fmadv.sparse import SparseBatch
from fmadv.training.ranking import GroupBatches, NegativeSampler, pair_keys
from tests.fm_helpers import random_fm, random_rows

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = {"n_factors": 8, "epochs": 30, "batch_size": 64, "patience": 5, "lr": 0.05}


@pytest.fixture(scope="module")
def planted():
    """Implicit feedback from planted taste: each user's 12 positives are drawn with
    probability proportional to exp(3 <u, v>) over rank-3 user and item factors, split
    8 / 2 / 2 into train, validation and test; unobserved pairs are simply absent."""
    rng = np.random.default_rng(3)
    n_users, n_items, per_user = 150, 90, 12
    taste = rng.normal(size=(n_users, 3)) @ rng.normal(size=(3, n_items))
    chosen = []
    for user in range(n_users):
        weights = np.exp(3 * taste[user] / taste[user].std())
        chosen.append(rng.choice(n_items, per_user, replace=False, p=weights / weights.sum()))
    users = np.repeat(np.arange(n_users), per_user)
    items = np.concatenate(chosen)
    part = np.tile(np.array([0] * 8 + [1] * 2 + [2] * 2), n_users)
    frame = pd.DataFrame({"user": users, "item": items, "label": 1})
    data = frame_to_dataset(frame, "label", ["user", "item"], user_col="user", item_col="item")
    splits = Splits(*(data.subset(np.flatnonzero(part == p)) for p in range(3)))
    return splits, Interactions.from_splits(splits)


@pytest.mark.parametrize("sampling", ["uniform", "popularity"])
def test_negatives_are_never_a_positive_of_their_user(sampling):
    rng = np.random.default_rng(0)
    # Dense positives (40% of the catalogue per user) make collisions certain.
    positives = sp.random(50, 30, density=0.4, format="csr", random_state=1)
    positives.data[:] = 1
    keys = pair_keys(positives)
    sampler = NegativeSampler(6, sampling)
    users = rng.integers(0, 50, 2000)
    items = sampler.draw(rng, users, keys, 30, sampler.weights(positives))
    assert items.shape == (2000, 6)
    liked = positives.toarray().astype(bool)
    assert not liked[users[:, None], items].any()


def test_an_epoch_visits_each_positive_once_with_fresh_negatives(planted):
    _, inter = planted
    batches = GroupBatches(
        inter.user_features, inter.item_features, inter.liked, NegativeSampler(3), 200,
        inter.user_columns,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    seen_pairs = []
    for batch, labels in batches(rng, torch.device("cpu")):
        groups = labels.view(-1, 4)
        assert torch.equal(groups[:, 0], torch.ones(len(groups)))
        assert torch.equal(groups[:, 1:], -torch.ones(len(groups), 3))
        assert batch.n_rows == len(labels)
        seen_pairs.append(len(groups))
    assert sum(seen_pairs) == inter.liked.nnz


def test_bpr_is_the_mean_softplus_of_score_gaps():
    scores = torch.tensor([2.0, 0.5, 1.0, -1.0, 0.0, 3.0])
    labels = torch.tensor([1.0, -1.0, -1.0, 1.0, -1.0, -1.0])
    expected = torch.stack(
        [
            torch.nn.functional.softplus(torch.tensor([0.5 - 2.0, 1.0 - 2.0])).mean(),
            torch.nn.functional.softplus(torch.tensor([0.0 + 1.0, 3.0 + 1.0])).mean(),
        ]
    )
    torch.testing.assert_close(bpr(scores, labels), expected)
    with pytest.raises(ConfigError, match="groups"):
        bpr(scores, torch.tensor([1.0, -1.0, 1.0, -1.0, -1.0, -1.0]))


def test_softmax_is_the_cross_entropy_of_the_positive_in_its_group():
    scores = torch.tensor([2.0, 0.5, 1.0, -1.0, 0.0, 3.0])
    labels = torch.tensor([1.0, -1.0, -1.0, 1.0, -1.0, -1.0])
    expected = torch.nn.functional.cross_entropy(
        scores.view(2, 3), torch.zeros(2).long(), reduction="none"
    )
    torch.testing.assert_close(softmax(scores, labels), expected)


@pytest.mark.parametrize("loss_fn", list(GROUP_LOSSES.values()), ids=list(GROUP_LOSSES))
@pytest.mark.parametrize("attack", [FGSM(0.05), L2Step(0.3)], ids=lambda a: a.name)
def test_the_closed_form_attack_is_exact_on_the_group_loss(attack, loss_fn):
    """Each row of a group moves on its own: the FM's closed form equals the generic
    attack on dense rows of the group loss."""
    model = random_fm(40, 4, seed=5, scale=0.4).double()
    batch = SparseBatch(random_rows(30, 40, active=4, seed=5), dtype=torch.float64)
    labels = torch.tensor([1.0, -1.0, -1.0] * 10, dtype=torch.float64)
    rho = loss_direction(model(batch), labels, loss_fn)
    exact = model.exact_attack_scores(batch, rho, attack.single_step())
    x_adv = attack.perturb(
        batch.to_dense(), lambda rows: loss_fn(model.forward_dense(rows), labels)
    )
    torch.testing.assert_close(exact, model.forward_dense(x_adv), rtol=1e-10, atol=1e-10)


def test_the_ranker_learns_the_planted_preference_better_than_popularity(planted):
    splits, inter = planted
    ranker = FMRanker(**FAST).fit(inter, valid=splits.valid)
    assert ranker.history_.best_epoch is not None
    test = splits.test
    relevant = inter.matrix(test, test.y > 0)
    users = np.flatnonzero(np.diff(relevant.indptr))
    fm_lists, _ = FMRecommender(ranker).fit(inter).recommend(users, k=10)
    popular_lists, _ = Popularity().fit(inter).recommend(users, k=10)
    fm_ndcg = np.nanmean(ndcg_at_k(fm_lists, relevant[users]))
    popular_ndcg = np.nanmean(ndcg_at_k(popular_lists, relevant[users]))
    assert fm_ndcg > 2 * popular_ndcg, (fm_ndcg, popular_ndcg)  # 0.42 against 0.09
    report = ranker.report(splits)
    assert report["test"]["ndcg@10"] == pytest.approx(fm_ndcg)


def test_the_same_seed_gives_the_same_ranker(planted):
    splits, inter = planted
    options = {**FAST, "epochs": 2}
    a = FMRanker(**options, random_state=4).fit(inter)
    b = FMRanker(**options, random_state=4).fit(inter)
    c = FMRanker(**options, random_state=5).fit(inter)
    assert torch.equal(a.model_.factors, b.model_.factors)
    assert not torch.equal(a.model_.factors, c.model_.factors)


def test_adversarial_ranking_trains_through_the_core(planted):
    splits, inter = planted
    plain = FMRanker(**{**FAST, "epochs": 2}).fit(inter)
    robust = FMRanker(**{**FAST, "epochs": 2}, beta=0.5, eps=0.05, loss="bpr").fit(inter)
    assert torch.isfinite(robust.model_.factors).all()
    assert not torch.equal(plain.model_.factors, robust.model_.factors)


def test_a_ranker_file_loads_as_a_ranker(planted, tmp_path):
    splits, inter = planted
    ranker = FMRanker(**{**FAST, "epochs": 1}).fit(inter)
    ranker.save(tmp_path / "r.safetensors", feature_map=inter.feature_map)
    loaded = FMEstimator.load(tmp_path / "r.safetensors")
    assert type(loaded) is FMRanker and loaded.get_params() == ranker.get_params()
    X = splits.test.X
    np.testing.assert_array_equal(loaded.decision_function(X), ranker.decision_function(X))
    from fmadv.errors import ModelFileError

    with pytest.raises(ModelFileError, match="a model of FMRanker, not of FMClassifier"):
        FMClassifier.load(tmp_path / "r.safetensors")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"loss": "cross_entropy"}, "the ranker trains with"),
        ({"n_negatives": 0}, "n_negatives must be"),
        ({"negative_sampling": "hard"}, "unknown negative sampling"),
        ({"positives": "clicked"}, "positives must be one of"),
        ({"eval_k": 0}, "eval_k must be"),
    ],
)
def test_bad_ranker_options_fail_before_training(options, message):
    with pytest.raises(ConfigError, match=message):
        FMRanker(**options).validate()


runner = CliRunner()


def test_train_a_ranker_from_the_command_line(tmp_path):
    out = tmp_path / "rank"
    args = ["train", "--task", "ranking", "--epochs", "2", "--n-factors", "8", "--quiet"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    loaded = FMEstimator.load(out)
    assert type(loaded) is FMRanker and loaded.n_factors == 8 and loaded.loss == "logistic"
    result = runner.invoke(app, ["recommend", str(out), "--users", "1,2", "-k", "3"])
    assert result.exit_code == 0, result.output
    # A group loss and adversarial training on the user's features, from the command.
    adversarial = tmp_path / "adversarial"
    options = ["--loss", "softmax", "--beta", "0.5", "--eps", "0.01", "--lr", "0.02"]
    result = runner.invoke(app, [*args, *options, "--out", str(adversarial)])
    assert result.exit_code == 0, result.output
    loaded = FMEstimator.load(adversarial)
    assert (loaded.loss, loaded.beta, loaded.eps, loaded.lr) == ("softmax", 0.5, 0.01, 0.02)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--n-negatives", "4"], "--n-negatives: not an option of --task classification"),
        (["--loss", "bpr"], "the classifier trains with"),
        (["--loss", "softmax"], "the classifier trains with"),
    ],
)
def test_ranking_options_are_refused_for_classification(tmp_path, args, fragment):
    result = runner.invoke(app, ["train", *args, "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert fragment in result.stderr
    assert not (tmp_path / "x").exists()


def test_users_unseen_in_training_are_ranked_from_their_features():
    """Cold start: taste follows a user's segment; the test users have no training row
    at all, so only their segment feature can tell the ranker what they like."""
    rng = np.random.default_rng(7)
    n_users, n_items, n_segments, per_user = 200, 60, 4, 10
    segment = rng.integers(n_segments, size=n_users)
    taste = rng.normal(size=(n_segments, n_items)) * 2
    rows = []
    for user in range(n_users):
        weights = np.exp(taste[segment[user]])
        for item in rng.choice(n_items, per_user, replace=False, p=weights / weights.sum()):
            rows.append((user, segment[user], item))
    frame = pd.DataFrame(rows, columns=["user", "segment", "item"]).assign(label=1)
    fields = ["user", "segment", "item"]
    data = frame_to_dataset(frame, "label", fields, user_col="user", item_col="item")
    cold = frame["user"].to_numpy() >= 160  # the last 40 users only appear in test
    warm = np.flatnonzero(~cold)
    valid = warm[rng.random(len(warm)) < 0.2]
    train = np.setdiff1d(warm, valid)
    splits = Splits(data.subset(train), data.subset(valid), data.subset(np.flatnonzero(cold)))
    inter = Interactions.from_splits(splits)
    ranker = FMRanker(**FAST).fit(inter, valid=splits.valid)
    relevant = inter.matrix(splits.test, splits.test.y > 0)
    users = np.flatnonzero(np.diff(relevant.indptr))
    assert inter.seen[users].nnz == 0  # truly unseen in training
    fm_lists, _ = FMRecommender(ranker).fit(inter).recommend(users, k=10)
    popular_lists, _ = Popularity().fit(inter).recommend(users, k=10)
    fm_ndcg = np.nanmean(ndcg_at_k(fm_lists, relevant[users]))
    popular_ndcg = np.nanmean(ndcg_at_k(popular_lists, relevant[users]))
    assert fm_ndcg > 1.5 * popular_ndcg, (fm_ndcg, popular_ndcg)  # 0.66 against 0.33
