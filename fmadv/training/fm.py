"""The factorization machine on the fit loop: its batches, its validation, its penalty."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from fmadv.checks import nonnegative
from fmadv.evaluation.predict import predict_scores
from fmadv.metrics.classification import classification_report
from fmadv.models.fm import FactorizationMachine
from fmadv.sparse import SparseBatch
from fmadv.training.loop import BatchSource, Evaluate


@dataclass
class FMPenalty:
    """The FM's L2 penalty: on the bias, and on the linear weights and factor rows of each
    batch's active features (see :meth:`FactorizationMachine.l2_penalty`)."""

    reg_bias: float = 0.0
    # Chosen on validation AUC (eval/classifier_defaults.py, MovieLens-100K u1): 1e-5
    # overfits after a few epochs; reg_factors from about 0.04 shrinks the factors away.
    reg_linear: float = 0.01
    reg_factors: float = 0.02

    def __post_init__(self) -> None:
        for name in ("reg_bias", "reg_linear", "reg_factors"):
            nonnegative(name, getattr(self, name))

    def __call__(self, fm: FactorizationMachine, batch: SparseBatch) -> torch.Tensor:
        l2 = fm.l2_penalty(batch, self.reg_linear, self.reg_factors)
        return l2 + self.reg_bias * fm.bias.square()


def iterate_batches(
    X: sp.csr_matrix,
    y: np.ndarray,
    batch_size: int,
    device: torch.device,
    order: np.ndarray | None = None,
):
    """Yield (SparseBatch, labels) over the rows of X in ``order`` (default: as stored)."""
    n_rows = X.shape[0]
    order = np.arange(n_rows) if order is None else order
    for start in range(0, n_rows, batch_size):
        rows = order[start : start + batch_size]
        labels = torch.from_numpy(np.asarray(y[rows], dtype=np.float32)).to(device)
        yield SparseBatch(X[rows], device), labels


def shuffled_batches(X: sp.csr_matrix, y: np.ndarray, batch_size: int) -> BatchSource:
    """The batch source of in-memory CSR rows: each epoch in an order drawn from the
    loop's seeded generator."""

    def batches(rng: np.random.Generator, device: torch.device):
        return iterate_batches(X, y, batch_size, device, rng.permutation(X.shape[0]))

    return batches


def classification_evaluator(valid: tuple[sp.csr_matrix, np.ndarray]) -> Evaluate:
    """``evaluate(model)``: accuracy, AUC, hinge and log loss on labelled rows."""

    def evaluate(fm: nn.Module) -> dict[str, float]:
        return classification_report(valid[1], predict_scores(fm, valid[0]))

    return evaluate
