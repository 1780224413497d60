"""L2-normalised gradient step, clipped to the input box.

The "Adv_Loss" perturbation of Huang, Xu, Schuurmans and Szepesvari, "Learning with a
Strong Adversary" (2015): r = alpha * g / ||g||_2, the steepest ascent direction of the
linearised loss within an L2 ball of radius alpha. Norms are taken per row over all
non-batch dimensions, before clipping to the box.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fmadv.attacks.base import (
    Attack,
    Bounds,
    Outputs,
    RowLoss,
    check_budget,
    check_support,
    clip_to_box,
    input_gradient,
)


@dataclass
class L2Step(Attack):
    """x_adv = clip(x + alpha * g / ||g||_2, box), g the gradient of the row's loss.

    Parameters
    ----------
    alpha
        L2 radius of the step.
    support
        ``"all"`` or ``"active"`` (only non-zero coordinates move; the norm is taken
        over those).
    """

    alpha: float = 0.003
    support: str = "all"
    name = "l2"

    def __post_init__(self) -> None:
        check_budget(self.alpha)
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
        grad = input_gradient(x, loss_fn)
        if self.support == "active":
            grad = grad * (x != 0)
        norms = grad.flatten(1).norm(dim=1).clamp_min(torch.finfo(grad.dtype).tiny)
        step = grad / norms.view(-1, *([1] * (grad.dim() - 1)))
        return clip_to_box(x.detach() + self.alpha * step, bounds)
