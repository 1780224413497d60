"""Fast gradient sign method, clipped to the input box.

Goodfellow, Shlens and Szegedy, "Explaining and Harnessing Adversarial Examples",
ICLR 2015. Threat model: every coordinate may move by at most ``alpha`` (an L-inf ball),
and the result is clipped to the box. On binary rows in [0, 1] that means a zero can only
rise to ``alpha`` and a one can only fall to ``1 - alpha``; rows whose loss has zero
gradient (a hinge that is not active) do not move.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fmadv.attacks.base import (
    Attack,
    Bounds,
    Outputs,
    RowLoss,
    check_step,
    check_support,
    clip_to_box,
    input_gradient,
)


@dataclass
class FGSM(Attack):
    """x_adv = clip(x + alpha * sign(grad_x loss), box).

    Parameters
    ----------
    alpha
        Step size, the L-inf radius.
    support
        ``"all"``: every coordinate may move; ``"active"``: only the non-zero ones (on
        binary rows: only the ones, and only down).
    """

    alpha: float = 0.003
    support: str = "all"
    name = "fgsm"

    def __post_init__(self) -> None:
        check_step(self.alpha)
        check_support(self.support)

    def perturb(
        self,
        x: torch.Tensor,
        loss_fn: RowLoss,
        bounds: Bounds = (0.0, 1.0),
        *,
        outputs_fn: Outputs | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        step = torch.sign(input_gradient(x, loss_fn))
        if self.support == "active":
            step = step * (x != 0)
        return clip_to_box(x.detach() + self.alpha * step, bounds)
