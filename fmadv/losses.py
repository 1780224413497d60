"""Per-row losses: margin losses for labels y in {-1, +1} and raw scores y_hat (the FM),
and the softmax cross-entropy for class logits (the image models).

A loss registers itself with :func:`margin_loss` or :func:`class_loss`: the CLI's
choices and the contract tests (every margin loss through the FM's exact attack path
against autograd) come from those registries.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from fmadv.errors import ConfigError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Losses of a score and a label in {-1, +1}, of class logits and class indices, and of
# groups of scores (a positive row followed by its sampled negatives).
MARGIN_LOSSES: dict[str, LossFn] = {}
CLASS_LOSSES: dict[str, LossFn] = {}
GROUP_LOSSES: dict[str, LossFn] = {}


def margin_loss(fn: LossFn) -> LossFn:
    """Register ``fn(scores, labels)`` (labels in {-1, +1}) under its name."""
    MARGIN_LOSSES[fn.__name__] = fn
    return fn


def class_loss(fn: LossFn) -> LossFn:
    """Register ``fn(logits, class_indices)`` under its name."""
    CLASS_LOSSES[fn.__name__] = fn
    return fn


def group_loss(fn: LossFn) -> LossFn:
    """Register ``fn(scores, labels)`` over groups of rows, each a positive (+1) followed by
    its negatives (-1), all groups the same size; one loss per group."""
    GROUP_LOSSES[fn.__name__] = fn
    return fn


@margin_loss
def hinge(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-row hinge cost max(0, 1 - y * y_hat)."""
    return torch.clamp(1 - labels * scores, min=0)


@margin_loss
def logistic(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-row logistic cost log(1 + exp(-y * y_hat)), computed stably."""
    return F.softplus(-labels * scores)


@margin_loss
def squared(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-row squared error (y_hat - y)^2, the regression loss of libFM on ±1 targets."""
    return (scores - labels).square()


@class_loss
def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-row softmax cross-entropy of class logits (batch x classes) and class indices."""
    return F.cross_entropy(logits, labels.long(), reduction="none")


@group_loss
def bpr(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Bayesian personalized ranking (Rendle et al., UAI 2009): per group, the mean over
    its negatives of log(1 + exp(-(y_hat_pos - y_hat_neg)))."""
    groups = scores.view(-1, group_size(labels))
    return F.softplus(groups[:, 1:] - groups[:, :1]).mean(1)


@group_loss
def softmax(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sampled softmax: per group, the cross-entropy of the positive among the group's
    rows, log(sum_j exp(y_hat_j)) - y_hat_pos (uniform negatives need no correction)."""
    groups = scores.view(-1, group_size(labels))
    return torch.logsumexp(groups, 1) - groups[:, 0]


def group_size(labels: torch.Tensor) -> int:
    """Rows per group of a batch laid out as [positive, negatives...] per group."""
    positives = int((labels > 0).sum())
    if positives == 0 or len(labels) % positives or labels[:: len(labels) // positives].le(0).any():
        raise ConfigError("a group loss needs batches of [positive, negatives...] groups")
    return len(labels) // positives


LOSSES: dict[str, LossFn] = {**MARGIN_LOSSES, **CLASS_LOSSES, **GROUP_LOSSES}


def get_loss(name: str) -> LossFn:
    """The per-row loss called ``name``; a :class:`ConfigError` lists the known ones."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ConfigError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}") from None


def loss_slope(scores: torch.Tensor, labels: torch.Tensor, loss_fn: LossFn) -> torch.Tensor:
    """d (sum of the losses) / d score, per score: how an attack should move each one."""
    scores = scores.detach().requires_grad_(True)
    with torch.enable_grad():
        (slope,) = torch.autograd.grad(loss_fn(scores, labels).sum(), scores)
    return slope


def loss_direction(scores: torch.Tensor, labels: torch.Tensor, loss_fn: LossFn) -> torch.Tensor:
    """rho = sign(d loss / d score) per score: the side an attack pushes each score to.

    The loss may couple several scores (a pairwise ranking loss): rho is still one sign
    per score, and a closed-form attack step stays exact as long as each scored row
    moves on its own.
    """
    return torch.sign(loss_slope(scores, labels, loss_fn))
