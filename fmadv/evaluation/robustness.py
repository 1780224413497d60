"""How many of the FM's predictions an attack flips, and how far it moves the margins."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch

from fmadv.attacks.base import Attack
from fmadv.attacks.core import attacked_forward
from fmadv.evaluation.predict import in_batches
from fmadv.losses import LossFn
from fmadv.metrics.robustness import robustness_report
from fmadv.models.fm import FactorizationMachine
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

    def attacked_rows(rows: slice, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
        batch = SparseBatch(X[rows], device)
        labels = torch.from_numpy(np.asarray(y[rows], np.float32)).to(device)
        adv, scores = attacked_forward(model, batch, labels, loss_fn, attack, keep_clean=True)
        return scores.cpu().numpy(), adv.cpu().numpy()

    clean, attacked = zip(*in_batches(model, X.shape[0], batch_size, attacked_rows), strict=True)
    return np.concatenate(clean), np.concatenate(attacked)


def line_search_scores(
    model: FactorizationMachine,
    X: sp.csr_matrix,
    y: np.ndarray,
    make_attack,
    eps: float,
    loss_fn: LossFn,
    steps: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """(clean, worst attacked) scores over the steps eps * i / steps, i = 1..steps.

    On an FM the score after a step of size a along the attack's direction is a quadratic
    in a: a large step can overshoot, so that the perturbed score ends on the safe side.
    The row's worst margin y * y_hat over the step grid is an exact, cheap lower bound of
    what a step of at most eps along that direction does.
    """
    labels = np.asarray(y, np.float64)
    clean, worst = None, None
    for i in range(1, steps + 1):
        scores, attacked = attacked_scores(model, X, y, make_attack(eps * i / steps), loss_fn)
        if worst is None:
            clean, worst = scores, attacked
        else:
            worse = labels * attacked < labels * worst
            worst = np.where(worse, attacked, worst)
    return clean, worst


def flip_curve(
    model: FactorizationMachine,
    X: sp.csr_matrix,
    y: np.ndarray,
    make_attack,
    budgets: Sequence[float],
    loss_fn: LossFn,
) -> list[dict]:
    """One robustness report per budget; ``make_attack(eps)`` builds the attack."""
    rows = []
    for eps in budgets:
        clean, attacked = attacked_scores(model, X, y, make_attack(eps), loss_fn)
        rows.append({"eps": float(eps), **robustness_report(y, clean, attacked)})
    return rows
