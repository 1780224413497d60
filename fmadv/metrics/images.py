"""Image classifier figures: accuracy and confidence, clean and under attack."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from fmadv.attacks.base import Attack, Bounds
from fmadv.losses import cross_entropy
from fmadv.training.objectives import perturb_inputs


def confidence_report(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """The report's columns: share correct and wrong, mean top-class probability overall,
    when correct and when wrong (NaN when there is no such row)."""
    probabilities = logits.softmax(1)
    confidence, predicted = probabilities.max(1)
    correct = predicted == labels

    def mean(values: torch.Tensor) -> float:
        return float(values.mean()) if values.numel() else float("nan")

    return {
        "correct": mean(correct.float()),
        "error": mean((~correct).float()),
        "mean_confidence": mean(confidence),
        "confidence_correct": mean(confidence[correct]),
        "confidence_wrong": mean(confidence[~correct]),
    }


def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits of every row, in eval mode and without gradients, on the model's device."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        parts = [
            model(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)
        ]
    model.train(was_training)
    return torch.cat(parts)


def adversarial_examples(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: Attack,
    bounds: Bounds,
    batch_size: int = 1000,
) -> torch.Tensor:
    """x_adv for every row, made against ``model`` (eval mode) with the cross-entropy."""
    device = next(model.parameters()).device
    low, high = (b.to(device) if torch.is_tensor(b) else b for b in bounds)
    was_training = model.training
    model.eval()
    parts = []
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        parts.append(
            perturb_inputs(attack, model, xb, yb, cross_entropy, (low, high)).detach().cpu()
        )
    model.train(was_training)
    return torch.cat(parts)


def attack_report(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: dict[str, Attack],
    bounds: Bounds,
    fixed: torch.Tensor | None = None,
) -> dict[str, dict[str, float]]:
    """Confidence report on the clean rows, on a fixed adversarial set (made once from
    another model), and under each attack made against this model."""
    results = {"clean": confidence_report(predict_logits(model, x), y)}
    if fixed is not None:
        results["fixed"] = confidence_report(predict_logits(model, fixed), y)
    for name, attack in attacks.items():
        x_adv = adversarial_examples(model, x, y, attack, bounds)
        results[name] = confidence_report(predict_logits(model, x_adv), y)
    return results


def accuracy_curve(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    make_attack: Callable[[float], Attack],
    budgets: Sequence[float],
    bounds: Bounds,
) -> list[dict[str, float]]:
    """Accuracy under ``make_attack(budget)`` for each budget (Huang et al.'s Figure 1)."""
    points = []
    for budget in budgets:
        x_adv = adversarial_examples(model, x, y, make_attack(budget), bounds) if budget else x
        report = confidence_report(predict_logits(model, x_adv), y)
        points.append({"budget": float(budget), "accuracy": report["correct"]})
    return points
