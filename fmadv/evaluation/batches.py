"""A model run over many rows, a batch at a time, in eval mode: what predicting and
attacking a whole split share, for the FM and the image models alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

T = TypeVar("T")


def in_batches(
    model: nn.Module,
    n_rows: int,
    batch_size: int,
    step: Callable[[slice, torch.device], T],
) -> list[T]:
    """``step(rows, device)`` for each slice of at most ``batch_size`` rows, in order.

    ``device`` is the model's. The model is in eval mode meanwhile (no dropout, so that
    every row sees the same network) and back in its own mode after.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        return [
            step(slice(start, start + batch_size), device) for start in range(0, n_rows, batch_size)
        ]
    finally:
        model.train(was_training)
