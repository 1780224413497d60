"""Image classifier figures: accuracy and confidence, clean and under attack."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from fmadv.attacks.base import Attack
from fmadv.attacks.core import perturb_dense
from fmadv.evaluation.predict import in_batches, predict_logits
from fmadv.losses import cross_entropy
from fmadv.metrics.images import confidence_report
from fmadv.threat import Bounds


@torch.no_grad()
def adversarial_examples(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: Attack,
    bounds: Bounds,
    batch_size: int = 1000,
) -> torch.Tensor:
    """x_adv for every row, made against ``model`` (eval mode) with the cross-entropy."""

    def perturbed(rows: slice, device: torch.device) -> torch.Tensor:
        box = tuple(b.to(device) if torch.is_tensor(b) else b for b in bounds)
        xb, yb = x[rows].to(device), y[rows].to(device)
        return perturb_dense(attack, model, xb, yb, cross_entropy, box).detach().cpu()

    return torch.cat(in_batches(model, len(x), batch_size, perturbed))


def attacked_report(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor):
    """Confidence report on x_adv, with the mean L2 norm of x_adv - x: the size of the
    perturbation as the model met it, after the box."""
    report = confidence_report(predict_logits(model, x_adv), y)
    return {**report, "l2_norm": float((x_adv - x).flatten(1).norm(dim=1).mean())}


def attack_report(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: dict[str, Attack],
    bounds: Bounds,
) -> dict[str, dict[str, float]]:
    """Confidence report on the clean rows and under each attack made against this model;
    the attacked rows also give the mean L2 norm that reached the model (attacks made
    against another model: :func:`transfer_report`)."""
    results = {"clean": {**confidence_report(predict_logits(model, x), y), "l2_norm": 0.0}}
    for name, attack in attacks.items():
        results[name] = attacked_report(
            model, x, adversarial_examples(model, x, y, attack, bounds), y
        )
    return results


def transfer_report(
    model: nn.Module,
    source: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: dict[str, Attack],
    bounds: Bounds,
) -> dict[str, dict[str, float]]:
    """Each attack made against ``source``, another network, and met by ``model``: what an
    attacker without access to the model transfers to it (with Adv_Loss from a normal
    network trained apart, Huang et al.'s fixed set)."""
    return {
        name: attacked_report(model, x, adversarial_examples(source, x, y, attack, bounds), y)
        for name, attack in attacks.items()
    }


def accuracy_curve(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    make_attack: Callable[[float], Attack],
    budgets: Sequence[float],
    bounds: Bounds,
) -> list[dict[str, float]]:
    """Accuracy under ``make_attack(budget)`` for each budget (Huang et al.'s Figure 1),
    with the mean L2 norm that reached the model."""
    points = []
    for budget in budgets:
        x_adv = adversarial_examples(model, x, y, make_attack(budget), bounds) if budget else x
        report = attacked_report(model, x, x_adv, y)
        points.append(
            {"eps": float(budget), "accuracy": report["correct"], "l2_norm": report["l2_norm"]}
        )
    return points
