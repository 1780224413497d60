import numpy as np
import pytest
import torch

from fmadv.errors import ConfigError
from fmadv.losses import get_loss, hinge, logistic, squared
from fmadv.metrics.classification import accuracy, auc, classification_report, log_loss


def brute_force_auc(labels, scores):
    pos, neg = scores[labels > 0], scores[labels < 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(3))
def test_auc_matches_pairwise_count_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.choice([-1.0, 1.0], 200)
    scores = rng.integers(0, 10, 200).astype(float)  # many ties
    assert auc(labels, scores) == pytest.approx(brute_force_auc(labels, scores))


def test_auc_is_nan_with_one_class():
    assert np.isnan(auc(np.ones(5), np.arange(5.0)))


def test_accuracy_and_log_loss():
    labels = np.array([1.0, -1.0, 1.0, -1.0])
    scores = np.array([2.0, -1.0, -0.5, 0.0])
    assert accuracy(labels, scores) == 0.75  # a zero score counts as -1
    expected = np.mean(np.log1p(np.exp(-labels * scores)))
    assert log_loss(labels, scores) == pytest.approx(expected)
    report = classification_report(labels, scores)
    assert set(report) == {"accuracy", "auc", "hinge", "log_loss"}
    assert report["hinge"] == pytest.approx(np.mean([0.0, 0.0, 1.5, 1.0]))


def test_losses_per_row():
    scores = torch.tensor([2.0, 0.5, -1.0])
    labels = torch.tensor([1.0, 1.0, 1.0])
    torch.testing.assert_close(hinge(scores, labels), torch.tensor([0.0, 0.5, 2.0]))
    torch.testing.assert_close(squared(scores, labels), torch.tensor([1.0, 0.25, 4.0]))
    torch.testing.assert_close(logistic(scores, labels), torch.log1p(torch.exp(-scores)))
    # Stable far in the tail, where log(1 + exp(800)) would overflow.
    assert torch.isfinite(logistic(torch.tensor([-800.0]), torch.tensor([1.0]))).all()
    with pytest.raises(ConfigError, match="unknown loss 'cubic'"):
        get_loss("cubic")
