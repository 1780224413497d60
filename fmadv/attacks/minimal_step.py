"""Minimal step to the nearest linearised decision boundary, rescaled to a budget.

Huang, Xu, Schuurmans and Szepesvari, "Learning with a Strong Adversary" (2015),
Algorithm 1 ("Adv_Alpha") and Section 3.1.2. Threat model: a perturbation of norm
exactly ``eps`` (L2, L-inf or L1, per row over all non-batch dimensions), placed in the
box as ``box`` says; the attacker knows the model's per-class outputs and the
true class. The direction is the one that crosses the closest decision boundary of the
outputs linearised around x, not the one that climbs a loss fastest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fmadv.attacks.base import Attack, Outputs, RowLoss, Target, register
from fmadv.errors import ConfigError
from fmadv.threat import (
    DEFAULT_EPS,
    UNIT_BOX,
    Bounds,
    place_step,
    rows_like,
    steepest_ascent,
)

NORMS = ("l2", "linf", "l1")


@register
@dataclass
class MinimalStep(Attack):
    """Huang et al.'s Adv_Alpha: x_adv = x + eps * r / ||r||, placed in the box.

    With f = ``target.outputs(x)`` and y the true class, for every class j != y let
    w_j = grad f_j - grad f_y and c_j = f_y - f_j. The smallest step that makes the
    linearised f_j equal f_y is

    * L2: r_j = c_j * w_j / ||w_j||_2^2,
    * L-inf: r_j = c_j * sign(w_j) / ||w_j||_1,
    * L1: r_j = c_j * sign(w_ji) / |w_ji| on the single coordinate i maximising |w_ji|,

    of norm c_j / ||w_j||_* (the dual norm). The class with the smallest such norm is
    kept and its step rescaled to norm ``eps``.

    Parameters
    ----------
    eps
        Norm of the perturbation before clipping. In [0, 1] for ``norm="linf"`` (the
        inputs live in a unit-width box); any number >= 0 for L2 and L1, whose radii
        grow with the input dimension.
    support
        ``"all"``: every coordinate may move; ``"active"``: only the non-zero ones (the
        gradients, and so the norms, are restricted to those).
    norm
        ``"l2"``, ``"linf"`` or ``"l1"``: the norm of the budget and of the minimal step.
    box
        How the step meets the input box (:data:`~fmadv.threat.BOXES`): ``"project"``
        keeps its norm at eps wherever the box leaves room, ``"clip"`` shortens it,
        ``"none"`` leaves the box.

    Notes
    -----
    ``perturb`` needs a target with ``outputs`` (per-class outputs, batch x classes: softmax
    probabilities for the image models as in the paper, or e.g. ``[-s, s]`` for a
    binary scorer) and ``labels`` (true class indices); ``loss_fn`` is not used.
    ``outputs`` must treat rows independently (a model in eval mode): the gradients
    of all rows come from one backward pass per class over the whole batch.

    A row that the outputs already misclassify has a negative c_j for some j; the
    paper's r_j would then step back towards the boundary. Here the class with the most
    negative signed distance c_j / ||w_j||_* is kept and the step goes along +w_j,
    further into the wrong class, as an adversary would. A row whose output gaps have
    zero gradient for every j (no linearised boundary in reach) does not move.
    """

    eps: float = DEFAULT_EPS
    support: str = "all"
    norm: str = "l2"
    box: str = "project"
    name = "minimal-step"

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ConfigError(
                f"unknown norm {self.norm!r} for MinimalStep; expected one of {NORMS}"
            )
        self.eps = self.threat.eps  # validates eps for the norm, the support and the box

    def perturb(
        self, x: torch.Tensor, target: Target | RowLoss, bounds: Bounds = UNIT_BOX
    ) -> torch.Tensor:
        """x moved by ``eps`` towards its nearest linearised boundary, placed in the box.

        Parameters
        ----------
        x
            Inputs, batch first.
        target
            A :class:`~fmadv.attacks.base.Target` with ``outputs`` (per-class outputs,
            shape (batch, classes)) and ``labels`` (true class index of each row); its
            loss is not used: the attack aims at a decision boundary, not up a loss.
        bounds
            (low, high) of the valid input box, floats or tensors broadcastable to x.

        Returns
        -------
        torch.Tensor
            The perturbed inputs, shape of x.
        """
        target = Target.of(target)
        w, _ = self._nearest_boundary(x, target.outputs, target.labels)
        # Rescaling r_j to norm eps cancels c_j (Section 3.1.2): only the direction of
        # w_j matters once the class is chosen.
        direction = steepest_ascent(w, self.norm)
        return place_step(x, direction, self.eps, self.norm, bounds, self.box)

    def minimal_step(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        """The paper's r: the smallest step that ties the linearised f_y with some f_j.

        Parameters
        ----------
        x, target
            As in :meth:`perturb`.

        Returns
        -------
        torch.Tensor
            r, shape of x, before rescaling and clipping; zero on rows with no
            linearised boundary in reach. On misclassified rows it points back towards
            the boundary (c_j < 0).
        """
        w, gap = self._nearest_boundary(x, target.outputs, target.labels)
        dual = rows_like(self._dual_norm(w), w)
        step = torch.where(dual > 0, rows_like(gap, w) / dual.clamp_min(_tiny(w)), 0.0)
        return step * steepest_ascent(w, self.norm)

    def _nearest_boundary(
        self, x: torch.Tensor, outputs_fn: Outputs | None, labels: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(w_j, c_j) of the class j with the smallest signed distance c_j / ||w_j||_*."""
        if outputs_fn is None or labels is None:
            raise ConfigError(
                "the minimal-step attack linearises per-class outputs: call "
                "perturb(x, Target(loss, outputs=..., labels=...), bounds) with outputs(x) "
                "of shape (batch, classes) and the true class indices as labels"
            )
        x = x.detach().requires_grad_(True)
        active = (x != 0).to(x.dtype) if self.support == "active" else None
        with torch.enable_grad():
            outputs = outputs_fn(x)
            labels = _check_labels(outputs, labels, len(x))
            true = outputs.gather(1, labels[:, None])[:, 0]
            n_classes = outputs.shape[1]
            best_w = torch.zeros_like(x)
            best_gap = torch.zeros_like(true).detach()
            best_dist = torch.full_like(best_gap, math.inf)
            # One backward pass per class over the whole batch: rows are independent, so
            # the gradient of the summed gap f_j - f_y is every row's own gradient.
            for j in range(n_classes):
                (w,) = torch.autograd.grad(
                    (outputs[:, j] - true).sum(), x, retain_graph=j < n_classes - 1
                )
                if active is not None:
                    w = w * active
                gap = (true - outputs[:, j]).detach()
                dual = self._dual_norm(w)
                # Zero dual norm: the gap does not change to first order, no boundary is
                # reached by any step (and c / 0 must not turn into NaN or -inf).
                reachable = (dual > 0) & (labels != j)
                dist = torch.where(reachable, gap / dual.clamp_min(_tiny(w)), math.inf)
                closer = dist < best_dist
                best_dist = torch.where(closer, dist, best_dist)
                best_gap = torch.where(closer, gap, best_gap)
                best_w = torch.where(rows_like(closer, w), w, best_w)
        return best_w, best_gap

    def _dual_norm(self, w: torch.Tensor) -> torch.Tensor:
        """Per-row dual norm of w: c / ||w||_* is the distance to the linearised boundary."""
        flat = w.flatten(1)
        if self.norm == "l2":
            return flat.norm(dim=1)
        if self.norm == "linf":
            return flat.abs().sum(1)
        return flat.abs().amax(1)


def _check_labels(outputs: torch.Tensor, labels: torch.Tensor, n_rows: int) -> torch.Tensor:
    if outputs.dim() != 2 or outputs.shape[0] != n_rows or outputs.shape[1] < 2:
        raise ConfigError(
            f"outputs must return (batch, classes >= 2) = ({n_rows}, C) outputs, "
            f"got shape {tuple(outputs.shape)}"
        )
    labels = torch.as_tensor(labels, device=outputs.device).reshape(-1)
    fractional = labels.is_floating_point() and bool((labels != labels.round()).any())
    if labels.shape[0] != n_rows or fractional:
        raise ConfigError(f"labels must be {n_rows} class indices, got {tuple(labels.shape)}")
    labels = labels.long()
    if ((labels < 0) | (labels >= outputs.shape[1])).any():
        raise ConfigError(f"labels must lie in [0, {outputs.shape[1]}) (class indices)")
    return labels


def _tiny(t: torch.Tensor) -> float:
    return torch.finfo(t.dtype).tiny
