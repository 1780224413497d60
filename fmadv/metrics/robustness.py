"""How many predictions an attack flips, and how far it moves the margins."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch

from fmadv.attacks.base import Attack
from fmadv.losses import LossFn
from fmadv.models.fm import FactorizationMachine
from fmadv.models.fm_attack import adversarial_scores
from fmadv.sparse import SparseBatch


@torch.no_grad()
def attacked_scores(
    model: FactorizationMachine,
    X: sp.csr_matrix,
    y: np.ndarray,
    attack: Attack,
    loss_fn: LossFn,
    batch_size: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """(clean, attacked) scores of every row, the attack made against ``loss_fn``."""
    device = model.bias.device
    clean, attacked = [], []
    for start in range(0, X.shape[0], batch_size):
        batch = SparseBatch(X[start : start + batch_size], device)
        labels = torch.from_numpy(np.asarray(y[start : start + batch_size], np.float32)).to(device)
        scores = model(batch)
        clean.append(scores.cpu().numpy())
        adv = adversarial_scores(model, batch, labels, loss_fn, attack, scores)
        attacked.append(adv.cpu().numpy())
    return np.concatenate(clean), np.concatenate(attacked)


def line_search_scores(
    model: FactorizationMachine,
    X: sp.csr_matrix,
    y: np.ndarray,
    make_attack,
    alpha: float,
    loss_fn: LossFn,
    steps: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """(clean, worst attacked) scores over the steps alpha * i / steps, i = 1..steps.

    On an FM the score after a step of size a along the attack's direction is a quadratic
    in a: a large step can overshoot, so that the perturbed score ends on the safe side.
    The row's worst margin y * y_hat over the step grid is an exact, cheap lower bound of
    what a step of at most alpha along that direction does.
    """
    labels = np.asarray(y, np.float64)
    clean, worst = None, None
    for i in range(1, steps + 1):
        scores, attacked = attacked_scores(model, X, y, make_attack(alpha * i / steps), loss_fn)
        if worst is None:
            clean, worst = scores, attacked
        else:
            worse = labels * attacked < labels * worst
            worst = np.where(worse, attacked, worst)
    return clean, worst


def robustness_report(labels: np.ndarray, clean: np.ndarray, attacked: np.ndarray) -> dict:
    """Flip rate, error rates and margins before and after an attack.

    * ``flip_rate``: share of rows whose predicted class differs between x and x_adv;
    * ``clean_error`` / ``adversarial_error``: share of rows misclassified;
    * ``mean_margin_*``: mean of y * y_hat; ``inside_margin_*``: share with y * y_hat < 1.
    """
    labels = np.asarray(labels, np.float64)
    clean_sign = np.where(clean > 0, 1.0, -1.0)
    adv_sign = np.where(attacked > 0, 1.0, -1.0)
    return {
        "flip_rate": float(np.mean(clean_sign != adv_sign)),
        "clean_error": float(np.mean(clean_sign != labels)),
        "adversarial_error": float(np.mean(adv_sign != labels)),
        "mean_margin_clean": float(np.mean(labels * clean)),
        "mean_margin_adversarial": float(np.mean(labels * attacked)),
        "inside_margin_clean": float(np.mean(labels * clean < 1)),
        "inside_margin_adversarial": float(np.mean(labels * attacked < 1)),
    }


def flip_curve(
    model: FactorizationMachine,
    X: sp.csr_matrix,
    y: np.ndarray,
    make_attack,
    alphas: Sequence[float],
    loss_fn: LossFn,
) -> list[dict]:
    """One robustness report per alpha; ``make_attack(alpha)`` builds the attack."""
    rows = []
    for alpha in alphas:
        clean, attacked = attacked_scores(model, X, y, make_attack(alpha), loss_fn)
        rows.append({"alpha": float(alpha), **robustness_report(y, clean, attacked)})
    return rows
