"""Binary classification metrics on labels in {-1, +1} and raw scores."""

from __future__ import annotations

import numpy as np

from fmadv.metrics.ranking import rowwise_auc


def accuracy(labels: np.ndarray, scores: np.ndarray) -> float:
    """Share of rows whose sign(score) equals the label (a score of 0 counts as -1)."""
    return float(np.mean(np.where(scores > 0, 1.0, -1.0) == labels))


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half); NaN with one class."""
    scores = np.asarray(scores, dtype=np.float64)[None]
    positive = (np.asarray(labels) > 0)[None]
    return float(rowwise_auc(scores, positive, np.ones_like(positive))[0])


def hinge_loss(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean hinge cost max(0, 1 - y * y_hat)."""
    return float(np.mean(np.maximum(0.0, 1.0 - labels * scores)))


def log_loss(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean logistic loss of sigmoid(y_hat) as the probability of +1."""
    return float(np.mean(np.logaddexp(0.0, -labels * scores)))


def classification_report(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Accuracy, AUC, hinge and log loss of ``scores`` against ``labels``."""
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    return {
        "accuracy": accuracy(labels, scores),
        "auc": auc(labels, scores),
        "hinge": hinge_loss(labels, scores),
        "log_loss": log_loss(labels, scores),
    }
