"""One fit loop for the factorization machine.

The loop owns batching, the optimizer, validation, early stopping and logging. What a
step minimises is an :class:`Objective` (clean loss here; adversarial objectives plug in
the same way), and what happens between ``backward`` and ``optimizer.step`` is a list of
:class:`StepHook` (gradient noise, for one).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from fmadv.errors import ConfigError
from fmadv.losses import LossFn, get_loss
from fmadv.metrics.classification import classification_report
from fmadv.models.fm import FactorizationMachine
from fmadv.sparse import SparseBatch
from fmadv.training.checkpoint import load_checkpoint, save_checkpoint
from fmadv.training.device import resolve_device
from fmadv.training.distributed import Distributed

OPTIMIZERS = ("adam", "adagrad", "sgd")
# Metric name -> True when larger is better.
MONITORS = {"auc": True, "accuracy": True, "hinge": False, "log_loss": False}


@dataclass
class TrainConfig:
    """Hyperparameters of one training run; every field has a working default."""

    epochs: int = 20
    batch_size: int = 4096
    lr: float = 0.01
    optimizer: str = "adam"
    loss: str = "hinge"
    reg_bias: float = 0.0
    reg_linear: float = 1e-5
    reg_factors: float = 1e-5
    patience: int = 3
    monitor: str = "auc"
    momentum: float = 0.0
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        """Raise :class:`ConfigError` on a value outside its valid range."""
        get_loss(self.loss)
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; expected one of {OPTIMIZERS}")
        if self.monitor not in MONITORS:
            raise ConfigError(f"unknown monitor {self.monitor!r}; expected one of {list(MONITORS)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch_size must be >= 1")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")
        for name in ("reg_bias", "reg_linear", "reg_factors", "momentum", "weight_decay"):
            value = getattr(self, name)
            if not value >= 0 or not math.isfinite(value):
                raise ConfigError(f"{name} must be >= 0, got {value}")
        if self.patience < 0:
            raise ConfigError(f"patience must be >= 0 (0: no early stopping), got {self.patience}")


class Objective(Protocol):
    """What one training step minimises: a scalar from the model, a batch and its labels."""

    def __call__(
        self, model: FactorizationMachine, batch: SparseBatch, labels: torch.Tensor, loss_fn: LossFn
    ) -> torch.Tensor: ...


def clean_objective(
    model: FactorizationMachine, batch: SparseBatch, labels: torch.Tensor, loss_fn: LossFn
) -> torch.Tensor:
    """The plain empirical risk: mean loss on the unperturbed rows."""
    return loss_fn(model(batch), labels).mean()


class StepHook(Protocol):
    """Called after ``backward`` and before ``optimizer.step``; ``step`` counts from 0."""

    def __call__(self, model: FactorizationMachine, step: int) -> None: ...


@dataclass
class History:
    """Per-epoch records of a run, the best epoch and its monitored value."""

    records: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_value: float | None = None


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params, decay = model.parameters(), config.weight_decay
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=decay)
    if config.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=config.lr, weight_decay=decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=decay)


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


@torch.no_grad()
def predict_scores(
    model: FactorizationMachine, X: sp.csr_matrix, batch_size: int = 65536
) -> np.ndarray:
    """Scores y_hat for every row of X, computed in batches on the model's device."""
    device = model.bias.device
    was_training = model.training
    model.eval()
    parts = [
        model(SparseBatch(X[start : start + batch_size], device)).cpu().numpy()
        for start in range(0, X.shape[0], batch_size)
    ]
    model.train(was_training)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


BatchSource = Callable[[np.random.Generator, torch.device], Iterable[tuple[Any, torch.Tensor]]]
Penalty = Callable[[nn.Module, Any], torch.Tensor]


def fit_loop(
    model: nn.Module,
    batches: BatchSource,
    n_rows: int,
    evaluate: Callable[[nn.Module], dict[str, float]] | None,
    config: TrainConfig,
    objective: Objective = clean_objective,
    hooks: Sequence[StepHook] = (),
    penalty: Penalty | None = None,
    log_path: str | Path | None = None,
    on_step: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
) -> History:
    """The training loop every model shares: the FM and the image classifiers.

    Parameters
    ----------
    model
        Any module; it is moved to the configured device.
    batches
        ``batches(rng, device)`` yields one epoch of (inputs, labels); the loop's seeded
        generator decides the order, so the same seed gives the same run.
    n_rows
        Rows per epoch, for progress.
    evaluate
        ``evaluate(model)`` -> validation metrics after each epoch (None: no validation,
        no early stopping). ``config.monitor`` names the metric that stops early; the
        best epoch's weights are restored at the end.
    config, objective, hooks
        Hyperparameters; what a step minimises; what runs between backward and the
        optimizer step.
    penalty
        ``penalty(model, inputs)`` added to the loss (the FM's L2 on active rows).
    log_path
        JSON Lines file that receives one record per epoch.
    on_step, on_epoch
        Progress callbacks: ``on_step(rows_done, rows_total)`` and ``on_epoch(record)``.
    checkpoint, resume
        File that receives the whole training state after every epoch (written by the
        first process only, atomically); with ``resume`` an existing one is loaded and
        the run continues after its last epoch, as if it had never stopped.

    Under ``torchrun`` each process trains on its shard of every global batch and the
    gradients are summed across processes (see :mod:`fmadv.training.distributed`).
    """
    config.validate()
    device = resolve_device(config.device)
    model.to(device)
    group = Distributed.from_environment(device)
    loss_fn = get_loss(config.loss)
    optimizer = make_optimizer(model, config)
    rng = np.random.default_rng(config.seed)
    larger_is_better = MONITORS[config.monitor]
    stateful = [*hooks, objective]
    history = History()
    best_state = None
    epochs_without_gain, step, first_epoch, stopped = 0, 0, 1, False
    if resume and checkpoint is not None and Path(checkpoint).exists():
        progress, best_state, rng_state = load_checkpoint(checkpoint, model, optimizer, stateful)
        rng.bit_generator.state = rng_state
        history = History(progress["history"], progress["best_epoch"], progress["best_value"])
        epochs_without_gain, step = progress["epochs_without_gain"], progress["step"]
        first_epoch, stopped = progress["epoch"] + 1, progress["stopped"]
    write_log = log_path is not None and group.is_main
    if write_log:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    mode = "a" if first_epoch > 1 else "w"
    with open(log_path, mode, encoding="utf-8") if write_log else contextlib.nullcontext() as log:
        for epoch in range(first_epoch, config.epochs + 1):
            if stopped:
                break
            started = time.perf_counter()
            model.train()
            total, rows_done = 0.0, 0
            for inputs, labels in batches(rng, device):
                global_rows = len(labels)
                inputs, labels = group.shard(inputs, labels)
                optimizer.zero_grad(set_to_none=True)
                if len(labels):
                    loss = objective(model, inputs, labels, loss_fn)
                    extra = penalty(model, inputs) if penalty is not None else 0.0
                    # Each process's mean, weighted by its share: the sum over processes
                    # is the mean over the global batch.
                    ((loss + extra) * (len(labels) / global_rows)).backward()
                    local_total = loss.item() * len(labels)
                else:
                    local_total = 0.0
                group.sum_gradients(model)
                for hook in hooks:
                    hook(model, step)
                optimizer.step()
                step += 1
                total += group.sum(local_total)
                rows_done += global_rows
                if on_step is not None:
                    on_step(rows_done, n_rows)
            record = {"epoch": epoch, "train_loss": total / max(rows_done, 1)}
            if evaluate is not None:
                model.eval()
                with torch.no_grad():
                    report = evaluate(model)
                record.update({f"valid_{name}": value for name, value in report.items()})
            record["seconds"] = time.perf_counter() - started
            history.records.append(record)
            if log is not None:
                log.write(json.dumps(record) + "\n")
                log.flush()
            if on_epoch is not None:
                on_epoch(record)
            if evaluate is not None:
                value = record[f"valid_{config.monitor}"]
                best = history.best_value
                if best is None or (value > best if larger_is_better else value < best):
                    history.best_epoch, history.best_value = epoch, value
                    best_state = copy.deepcopy(model.state_dict())
                    epochs_without_gain = 0
                else:
                    epochs_without_gain += 1
                    stopped = bool(config.patience) and epochs_without_gain >= config.patience
            if checkpoint is not None and group.is_main:
                progress = {
                    "epoch": epoch, "step": step, "history": history.records,
                    "best_epoch": history.best_epoch, "best_value": history.best_value,
                    "epochs_without_gain": epochs_without_gain, "stopped": stopped,
                }  # fmt: skip
                save_checkpoint(
                    checkpoint, model, optimizer, progress, best_state,
                    rng.bit_generator.state, stateful,
                )  # fmt: skip
            group.barrier()
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


def fit_fm(
    model: FactorizationMachine,
    batches: BatchSource,
    n_rows: int,
    valid: tuple[sp.csr_matrix, np.ndarray] | None,
    config: TrainConfig,
    objective: Objective = clean_objective,
    hooks: Sequence[StepHook] = (),
    log_path: str | Path | None = None,
    on_step: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
) -> History:
    """:func:`fit_loop` for a factorization machine fed by any source of CSR batches.

    Validation reports accuracy, AUC, hinge and log loss each epoch; the L2 penalty acts
    on the rows each batch touches (see :meth:`FactorizationMachine.l2_penalty`).
    """

    def evaluate(fm: nn.Module) -> dict[str, float]:
        return classification_report(valid[1], predict_scores(fm, valid[0]))

    def penalty(fm: FactorizationMachine, batch: SparseBatch) -> torch.Tensor:
        l2 = fm.l2_penalty(batch, config.reg_linear, config.reg_factors)
        return l2 + config.reg_bias * fm.bias.square()

    return fit_loop(
        model, batches, n_rows, evaluate if valid is not None else None, config,
        objective, hooks, penalty, log_path, on_step, on_epoch, checkpoint, resume,
    )  # fmt: skip


def fit(
    model: FactorizationMachine,
    train: tuple[sp.csr_matrix, np.ndarray],
    valid: tuple[sp.csr_matrix, np.ndarray] | None = None,
    config: TrainConfig | None = None,
    **options: Any,
) -> History:
    """Train a factorization machine on in-memory CSR rows and labels in {-1, +1};
    ``options`` are those of :func:`fit_fm` (objective, hooks, logging, checkpoints)."""
    config = config or TrainConfig()
    X, y = train

    def batches(rng: np.random.Generator, device: torch.device):
        return iterate_batches(X, y, config.batch_size, device, rng.permutation(X.shape[0]))

    return fit_fm(model, batches, X.shape[0], valid, config, **options)
