"""Adversarial perturbation of the active embeddings (APR).

He, He, Du and Chua, "Adversarial Personalized Ranking for Recommendation", SIGIR 2018.
Threat model: not the inputs but the embeddings of a row's active features move, by
delta = eps * g / ||g||_2, where g is the gradient of the row's loss with respect to those
embeddings and the norm runs over all of them together. The inputs stay as they are, so
there is no box: this strategy is used through a model's embedding fast path (the FM's
:func:`~fmadv.models.fm_attack.adversarial_scores`), not through :meth:`perturb`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fmadv.attacks.base import Attack, Bounds, Outputs, RowLoss
from fmadv.errors import ConfigError


@dataclass
class APR(Attack):
    """Perturb each row's active embeddings by eps * g / ||g||_2.

    Parameters
    ----------
    alpha
        eps, the L2 radius of the perturbation of the row's active embeddings.
    support
        Only ``"active"`` makes sense here; ``"all"`` is accepted and means the same.
    """

    alpha: float = 0.5
    support: str = "active"
    name = "apr"

    def __post_init__(self) -> None:
        if not self.alpha >= 0 or not math.isfinite(self.alpha):
            raise ConfigError(f"APR eps must be a number >= 0, got {self.alpha}")

    def perturb(
        self,
        x: torch.Tensor,
        loss_fn: RowLoss,
        bounds: Bounds = (0.0, 1.0),
        *,
        outputs_fn: Outputs | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        raise ConfigError("APR perturbs a model's embeddings, not its inputs; use it with an FM")
