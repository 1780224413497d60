"""The one place a model meets an attack, for training and for evaluation alike.

:func:`attacked_forward` gives a model's outputs at the attacked inputs, differentiable
in the parameters with the perturbation held fixed (the perturbation is a function of
the parameters, but adversarial training treats it as a constant, as autograd on x_adv
computed under ``no_grad`` does). Two paths give the same numbers:

* the exact path: when the attack is one steepest-ascent step to the edge of its ball
  (:meth:`~fmadv.attacks.base.Attack.single_step`) and the model evaluates that step in
  closed form (the FM's ``exact_attack_scores``: sign and L2 steps over all or active
  features, and APR's step on the active embeddings), the model does so without ever
  building a dense x_adv;
* the generic path: every other attack (PGD, the minimal step, anything new) runs on the
  model's dense inputs through :meth:`~fmadv.attacks.base.Attack.perturb`.

What a model must offer is :class:`~fmadv.threat.Attackable` (the FM and the image
models inherit it; any other ``nn.Module`` on dense inputs with class logits is treated
as one).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from fmadv.attacks.base import Attack, Target
from fmadv.errors import ConfigError
from fmadv.losses import LossFn, loss_slope
from fmadv.threat import UNIT_BOX, Attackable, Bounds


class AttackedOutputs(NamedTuple):
    """Outputs at x_adv, and at x when they were given or asked for (else None)."""

    adversarial: torch.Tensor
    clean: torch.Tensor | None


def attacked_forward(
    model: nn.Module,
    inputs,
    labels: torch.Tensor,
    loss_fn: LossFn,
    attack: Attack,
    *,
    bounds: Bounds = UNIT_BOX,
    clean: torch.Tensor | None = None,
    keep_clean: bool = False,
    lean_dtype: torch.dtype | None = None,
) -> AttackedOutputs:
    """The model's outputs under ``attack``, the attack made against ``loss_fn``.

    Parameters
    ----------
    model
        The model; :class:`~fmadv.threat.Attackable` says what it may offer.
    inputs, labels
        A batch as the model takes it (a :class:`~fmadv.sparse.SparseBatch` for the FM,
        a tensor for the image models) and its labels as the loss takes them.
    loss_fn
        ``loss_fn(outputs, labels)``, one loss per row: what the attack increases.
    attack
        Any registered attack.
    bounds
        The input box of dense inputs (the FM's rows live in [0, 1]).
    clean
        The clean outputs when the caller has them (saves a forward pass).
    keep_clean
        Return the clean outputs too; they are computed in the order the path needs
        (before the attack on the exact path, after it on the generic path, so that a
        model with dropout draws its masks in the same order either way).
    lean_dtype
        ``torch.bfloat16`` runs the FM's mask product in bf16 (see the FM's exact path).
    """
    surface = _surface(model)
    ball = attack.single_step()
    if ball is not None:
        scored = clean if clean is not None else model(inputs)
        slope = loss_slope(scored, labels, loss_fn)
        adversarial = surface.exact_attack_scores(inputs, slope, ball, lean_dtype)
        if adversarial is not None:
            return AttackedOutputs(adversarial, scored)
    if attack.threat.space != "inputs":
        raise ConfigError(
            f"the {attack.name!r} attack moves embeddings, and {type(model).__name__} "
            "has no exact embedding path for it"
        )
    x, forward = surface.dense_view(inputs)
    x_adv = perturb_dense(attack, forward, x, labels, loss_fn, bounds, surface)
    adversarial = forward(x_adv)
    if clean is None and keep_clean:
        clean = model(inputs)
    return AttackedOutputs(adversarial, clean)


def adversarial_scores(model: nn.Module, inputs, labels, loss_fn, attack, **options):
    """Only the attacked outputs of :func:`attacked_forward` (same options)."""
    return attacked_forward(model, inputs, labels, loss_fn, attack, **options).adversarial


def perturb_dense(
    attack: Attack,
    forward,
    x: torch.Tensor,
    labels: torch.Tensor,
    loss_fn: LossFn,
    bounds: Bounds,
    surface: Attackable | None = None,
) -> torch.Tensor:
    """x_adv for dense rows x, attacking ``forward`` (a model, or the part of one after a
    hidden representation) with ``loss_fn``; per-class outputs and labels come from
    ``surface`` (softmax of class logits by default)."""
    surface = surface or Attackable()
    target = Target(
        loss=lambda z: loss_fn(forward(z), labels),
        outputs=lambda z: surface.class_outputs(forward(z)),
        labels=surface.class_labels(labels),
    )
    return attack.perturb(x, target, bounds)


def _surface(model: nn.Module) -> Attackable:
    return model if isinstance(model, Attackable) else _DenseModel(model)


class _DenseModel(Attackable):
    """Any module on dense inputs with class logits, seen through :class:`Attackable`."""

    def __init__(self, module: nn.Module):
        self.module = module

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)
