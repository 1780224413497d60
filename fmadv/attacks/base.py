"""The attack interface shared by the factorization machine and the image models.

An attack gets the inputs, a function giving each row's loss, and the box the inputs
must stay in. It never knows which loss or which box: the same attack serves a hinge
FM on binary rows in [0, 1] and a softmax CNN on mean-subtracted pixels.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch

from fmadv.errors import ConfigError

RowLoss = Callable[[torch.Tensor], torch.Tensor]
# Maps inputs to per-class outputs (batch x classes), for attacks that need more than
# the loss (Huang et al.'s minimal-step attack linearises them).
Outputs = Callable[[torch.Tensor], torch.Tensor]
Bounds = tuple[float | torch.Tensor, float | torch.Tensor]

SUPPORTS = ("all", "active")


class Attack(ABC):
    """A perturbation that increases a loss, inside a box."""

    name: str = ""

    @abstractmethod
    def perturb(
        self,
        x: torch.Tensor,
        loss_fn: RowLoss,
        bounds: Bounds = (0.0, 1.0),
        *,
        outputs_fn: Outputs | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The perturbed inputs.

        Parameters
        ----------
        x
            Inputs, batch first.
        loss_fn
            ``loss_fn(x)`` returns one loss per row: what the attack increases.
        bounds
            (low, high) of the valid input box, floats or tensors broadcastable to x.
        outputs_fn, labels
            Per-class outputs and the true classes, for attacks that need them.
        """


def input_gradient(x: torch.Tensor, loss_fn: RowLoss) -> torch.Tensor:
    """Gradient of the summed row losses with respect to the inputs."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(loss_fn(x).sum(), x)
    return grad


def clip_to_box(x: torch.Tensor, bounds: Bounds) -> torch.Tensor:
    low, high = bounds
    return torch.clamp(x, min=low, max=high)


def check_support(support: str) -> str:
    if support not in SUPPORTS:
        raise ConfigError(f"unknown perturbation support {support!r}; expected one of {SUPPORTS}")
    return support


def check_step(alpha: float) -> float:
    """An L-inf step in a unit box: 0 <= alpha <= 1."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must lie in [0, 1] (inputs live in the unit box), got {alpha}")
    return float(alpha)


def check_budget(alpha: float) -> float:
    """A norm budget: finite and >= 0 (an L2 norm may exceed 1)."""
    if not alpha >= 0 or alpha == float("inf"):
        raise ConfigError(f"the attack budget must be a finite number >= 0, got {alpha}")
    return float(alpha)
