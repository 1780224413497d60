"""Adversarial perturbation of the active embeddings (APR).

He, He, Du and Chua, "Adversarial Personalized Ranking for Recommendation", SIGIR 2018.
Threat model: not the inputs but the embeddings of a row's active features move, by
delta = eps * g / ||g||_2, where g is the gradient of the row's loss with respect to those
embeddings and the norm runs over all of them together. Embeddings have no box.

A model that has embeddings evaluates this step itself (the FM's exact path, see
:mod:`fmadv.attacks.core`); :meth:`APR.perturb` is the same step on an embedding tensor
given as its input, for a model that exposes one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fmadv.attacks.base import RowLoss, SteepestStep, Target, register, steepest_step
from fmadv.threat import UNBOUNDED, Bounds, ThreatModel


@register
@dataclass
class APR(SteepestStep):
    """Move each row's active embeddings by eps * g / ||g||_2.

    Parameters
    ----------
    eps
        The L2 radius of the perturbation of the row's active embeddings.
    support
        Only ``"active"`` makes sense here; ``"all"`` is accepted and means the same.
    """

    eps: float = 0.5
    support: str = "active"
    name = "apr"

    @property
    def threat(self) -> ThreatModel:
        return ThreatModel("l2", self.eps, self.support, space="embeddings")

    def perturb(
        self, x: torch.Tensor, target: Target | RowLoss, bounds: Bounds = UNBOUNDED
    ) -> torch.Tensor:
        """``x`` is a batch of embeddings (batch first); the step runs over all of a row's."""
        ball = ThreatModel("l2", self.eps, "all", space="embeddings")
        return steepest_step(x, Target.of(target).loss, "l2", ball, bounds, "clip")

    def single_step(self) -> ThreatModel:
        return self.threat  # embeddings have no box
