"""Training objectives: what one step minimises.

* clean: mean loss on the rows (:func:`fmadv.training.loop.clean_objective`);
* mixed: loss(x) + beta * loss(x_adv), x_adv regenerated from the current model at every
  step (Goodfellow et al. 2015; beta = 0.5 and alpha = 0.003 in the FM blog setting);
* adversarial only: loss(x_adv) alone (Nokland 2015; Huang et al. 2015, "learning with
  an adversary").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fmadv.attacks.base import Attack
from fmadv.errors import ConfigError
from fmadv.models.batch import SparseBatch
from fmadv.models.fm import FactorizationMachine
from fmadv.models.fm_attack import adversarial_scores
from fmadv.training.losses import LossFn


@dataclass
class AdversarialObjective:
    """loss(x) + beta * loss(x_adv), or loss(x_adv) alone with ``adversarial_only``.

    Parameters
    ----------
    attack
        How x_adv is made from the current model (FGSM, L2 step); its gradient is taken
        with respect to the same loss the model is trained on.
    beta
        Weight of the adversarial term, >= 0.
    adversarial_only
        Train on the perturbed rows only.
    """

    attack: Attack
    beta: float = 0.5
    adversarial_only: bool = False

    def __post_init__(self) -> None:
        if not self.beta >= 0 or not math.isfinite(self.beta):
            raise ConfigError(f"beta must be a number >= 0, got {self.beta}")

    def __call__(
        self,
        model: FactorizationMachine,
        batch: SparseBatch,
        labels: torch.Tensor,
        loss_fn: LossFn,
    ) -> torch.Tensor:
        scores = model(batch)
        adv = adversarial_scores(model, batch, labels, loss_fn, self.attack, scores.detach())
        adversarial = loss_fn(adv, labels).mean()
        if self.adversarial_only:
            return adversarial
        return loss_fn(scores, labels).mean() + self.beta * adversarial
