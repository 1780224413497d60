"""A model run over many rows, a batch at a time, in eval mode: what predicting and
attacking a whole split share, for the FM and the image models alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from fmadv.models.fm import FactorizationMachine
from fmadv.sparse import SparseBatch

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


@torch.no_grad()
def predict_scores(
    model: FactorizationMachine, X: sp.csr_matrix, batch_size: int = 65536
) -> np.ndarray:
    """The FM's scores y_hat for every row of X."""

    def scores(rows: slice, device: torch.device) -> np.ndarray:
        return model(SparseBatch(X[rows], device)).cpu().numpy()

    parts = in_batches(model, X.shape[0], batch_size, scores)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """An image model's logits for every row of x."""

    def logits(rows: slice, device: torch.device) -> torch.Tensor:
        return model(x[rows].to(device)).cpu()

    return torch.cat(in_batches(model, len(x), batch_size, logits))
