"""Image classifier figures from logits: accuracy and confidence."""

from __future__ import annotations

import torch


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
