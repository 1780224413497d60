"""How many of the FM's predictions an attack flips, and how far it moves the margins."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch

from fmadv.attacks.base import Attack
from fmadv.attacks.core import attacked_forward
from fmadv.attacks.pgd import PGD
from fmadv.errors import ConfigError
from fmadv.evaluation.predict import in_batches
from fmadv.losses import LossFn, logistic
from fmadv.metrics.robustness import robustness_report
from fmadv.models.fm import FactorizationMachine
from fmadv.sparse import SparseBatch
from fmadv.threat import check_linf_eps

# How hard a robustness figure attacks (see strongest_scores), strongest first.
STRENGTHS = ("strong", "line", "single")
# Inputs of one dense batch of the strong attack's PGD (256 MiB in float32).
DENSE_ELEMENTS = 1 << 26


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
) -> tuple[np.ndarray, np.ndarray]:
    """(clean, worst) scores: per row the exact worst point, for the row's label, of the
    segment from x to the single step of ``make_attack(eps)``.

    A single step on an FM can overshoot: its score along the step's direction e is
    exactly a quadratic, y(a) = y0 + b a + c a^2, and a full step can land past the
    boundary on the safe side. The direction does not depend on the step's length, and
    for a <= 1 the binary row's step never meets the box's walls, so the scores at
    a = 1/2 and a = 1 give b and c; the worst point of [0, eps] is then an end or the
    vertex. ``eps`` <= 1.
    """
    check_linf_eps(eps)
    clean, half = attacked_scores(model, X, y, make_attack(0.5), loss_fn)
    _, full = attacked_scores(model, X, y, make_attack(1.0), loss_fn)
    y0, y_half, y_full = (torch.from_numpy(np.asarray(v, np.float64)) for v in (clean, half, full))
    labels = torch.from_numpy(np.asarray(y, np.float64))
    worst = on_segment(y0, y_half, y_full, worst_step(y0, y_half, y_full, labels, eps)).numpy()
    return clean, worst.astype(clean.dtype)


def worst_step(y0, y_half, y_full, labels: torch.Tensor, eps: float) -> torch.Tensor:
    """Per row the step a of [0, eps] minimising labels * y(a), y the quadratic through
    (0, y0), (1/2, y_half), (1, y_full): an end of the segment or the vertex."""
    b = 4 * y_half - 3 * y0 - y_full
    c = 2 * y_full + 2 * y0 - 4 * y_half
    vertex = torch.where(c != 0, -b / (2 * c), torch.zeros_like(b)).clamp(0, eps)
    steps = torch.stack([torch.zeros_like(b), torch.full_like(b, eps), vertex], 1)
    reached = y0[:, None] + b[:, None] * steps + c[:, None] * steps.square()
    return steps.gather(1, (labels[:, None] * reached).argmin(1, keepdim=True))[:, 0]


def on_segment(y0, y_half, y_full, a: torch.Tensor) -> torch.Tensor:
    """That quadratic at a, by interpolation: differentiable in the three scores."""
    return (1 - 3 * a + 2 * a**2) * y0 + (4 * a - 4 * a**2) * y_half + (2 * a**2 - a) * y_full


def strongest_scores(
    model: FactorizationMachine,
    X: sp.csr_matrix,
    y: np.ndarray,
    make_attack,
    eps: float,
    loss_fn: LossFn,
    strength: str = "strong",
    pgd_steps: int = 20,
) -> tuple[np.ndarray, np.ndarray]:
    """(clean, attacked) scores under the attack of ``make_attack(eps)`` at ``strength``:

    * ``"single"``: its single step (the FM blog's figure);
    * ``"line"``: the exact worst point on the segment to that step
      (:func:`line_search_scores`);
    * ``"strong"`` (the default): per row the worst of the line search and of PGD in the
      same ball and box (``pgd_steps`` steps from a random start, each row keeping its
      worst iterate). Every point is a real perturbation scored exactly, so the result
      is never weaker than the single step nor than the clean row.

    The single step follows ``loss_fn`` (the model's training loss, as the blog does);
    the others aim at the margin itself (the logistic loss, whose slope is never 0: a
    hinge's zero slope beyond the margin would leave those rows unattacked).
    """
    if check_strength(strength) == "single":
        return attacked_scores(model, X, y, make_attack(eps), loss_fn)
    attack = make_attack(eps)
    clean, worst = line_search_scores(model, X, y, make_attack, eps, logistic)
    # The model's own loss may push a row another way (squared: towards its label).
    single = attacked_scores(model, X, y, attack, loss_fn)[1]
    worst = lower_margin(y, single, worst)
    ball = attack.threat
    if strength == "line" or ball.space != "inputs" or eps == 0:
        return clean, worst
    pgd = PGD(eps, ball.support, ball.norm, steps=pgd_steps, box=ball.box)
    # PGD runs on dense rows: batches of at most DENSE_ELEMENTS inputs.
    rows = max(1, min(4096, DENSE_ELEMENTS // max(X.shape[1], 1)))
    _, projected = attacked_scores(model, X, y, pgd, logistic, batch_size=rows)
    return clean, lower_margin(y, projected, worst)


def lower_margin(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row the score of a or b whose margin y * score is lower: the worse attack."""
    labels = np.asarray(y, np.float64)
    return np.where(labels * a < labels * b, a, b)


def check_strength(strength: str) -> str:
    if strength not in STRENGTHS:
        raise ConfigError(f"unknown attack strength {strength!r}; expected one of {STRENGTHS}")
    return strength


def flip_curve(
    model: FactorizationMachine,
    X: sp.csr_matrix,
    y: np.ndarray,
    make_attack,
    budgets: Sequence[float],
    loss_fn: LossFn,
    strength: str = "strong",
) -> list[dict]:
    """One robustness report per budget; ``make_attack(eps)`` builds the attack, run at
    ``strength`` (:func:`strongest_scores`). Above the single step, each row keeps the
    worst point found at any budget up to eps (each lies in the larger ball too): PGD's
    long steps at a large budget can overshoot as the single step does."""
    rows, worst = [], None
    for eps in sorted(budgets):
        clean, attacked = strongest_scores(model, X, y, make_attack, eps, loss_fn, strength)
        if strength != "single" and worst is not None:
            attacked = lower_margin(y, worst, attacked)
        worst = attacked
        rows.append({"eps": float(eps), **robustness_report(y, clean, attacked)})
    order = {float(eps): number for number, eps in enumerate(budgets)}
    return sorted(rows, key=lambda row: order[row["eps"]])
