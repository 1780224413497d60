"""Per-row losses: margin losses for labels y in {-1, +1} and raw scores y_hat (the FM),
and the softmax cross-entropy for class logits (the image models)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from fmadv.errors import ConfigError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def hinge(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-row hinge cost max(0, 1 - y * y_hat)."""
    return torch.clamp(1 - labels * scores, min=0)


def logistic(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-row logistic cost log(1 + exp(-y * y_hat)), computed stably."""
    return F.softplus(-labels * scores)


def squared(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-row squared error (y_hat - y)^2, the regression loss of libFM on ±1 targets."""
    return (scores - labels).square()


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-row softmax cross-entropy of class logits (batch x classes) and class indices."""
    return F.cross_entropy(logits, labels.long(), reduction="none")


LOSSES: dict[str, LossFn] = {
    "hinge": hinge,
    "logistic": logistic,
    "squared": squared,
    "cross_entropy": cross_entropy,
}


def get_loss(name: str) -> LossFn:
    """The per-row loss called ``name``; a :class:`ConfigError` lists the known ones."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ConfigError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}") from None
