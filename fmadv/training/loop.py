"""One fit loop for every model: the factorization machine and the image classifiers.

The loop owns the optimizer, the seeded batch order, distribution and validation. What a
step minimises is an :class:`Objective` (clean loss here; adversarial objectives plug in
the same way), and what happens between ``backward`` and ``optimizer.step`` is a list of
:class:`StepHook` (gradient noise, for one). Logging, progress, early stopping and
checkpoints are callbacks (:mod:`fmadv.training.callbacks`).

:mod:`fmadv.training.fm` puts the factorization machine on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from fmadv.checks import integer, nonnegative, positive
from fmadv.errors import ConfigError
from fmadv.losses import LossFn, get_loss
from fmadv.training.callbacks import (
    Callback,
    Checkpoint,
    EarlyStopping,
    History,
    JsonlLog,
    Progress,
    TrainState,
)
from fmadv.training.device import resolve_device
from fmadv.training.distributed import Distributed
from fmadv.training.optimizers import OPTIMIZERS, check_sparse, make_optimizer

# Metric name -> True when larger is better.
MONITORS = {"auc": True, "accuracy": True, "hinge": False, "log_loss": False, "ndcg": True}


@dataclass
class TrainConfig:
    """Hyperparameters of one training run; every field has a working default."""

    epochs: int = 20
    batch_size: int = 4096
    lr: float = 0.01
    optimizer: str = "adam"
    # The logistic loss generalises better than the hinge (the FM blog's, --loss hinge)
    # on validation: eval/classifier_defaults.py.
    loss: str = "logistic"
    patience: int = 3
    monitor: str = "auc"
    momentum: float = 0.0
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"
    # Gradients and optimizer steps only on the embedding rows each batch uses (the FM).
    sparse_updates: bool = False

    def validate(self) -> None:
        """Raise :class:`ConfigError` on a value outside its valid range."""
        get_loss(self.loss)
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; expected one of {OPTIMIZERS}")
        if self.monitor not in MONITORS:
            raise ConfigError(f"unknown monitor {self.monitor!r}; expected one of {list(MONITORS)}")
        integer("epochs", self.epochs, 1)
        integer("batch_size", self.batch_size, 1)
        integer("patience (0: no early stopping)", self.patience, 0)
        positive("lr", self.lr)
        nonnegative("momentum", self.momentum)
        nonnegative("weight_decay", self.weight_decay)
        check_sparse(self.sparse_updates, self.momentum, self.weight_decay)


class Objective(Protocol):
    """What one training step minimises: a scalar from the model, a batch of inputs (a
    :class:`~fmadv.sparse.SparseBatch` for the FM, a tensor for images) and its labels."""

    def __call__(
        self, model: nn.Module, inputs: Any, labels: torch.Tensor, loss_fn: LossFn
    ) -> torch.Tensor: ...


def clean_objective(
    model: nn.Module, inputs: Any, labels: torch.Tensor, loss_fn: LossFn
) -> torch.Tensor:
    """The plain empirical risk: mean loss on the unperturbed rows."""
    return loss_fn(model(inputs), labels).mean()


class StepHook(Protocol):
    """Called after ``backward`` and before ``optimizer.step``; ``step`` counts from 0."""

    def __call__(self, model: nn.Module, step: int) -> None: ...


BatchSource = Callable[[np.random.Generator, torch.device], Iterable[tuple[Any, torch.Tensor]]]
Penalty = Callable[[nn.Module, Any], torch.Tensor]
Evaluate = Callable[[nn.Module], dict[str, float]]


@dataclass(frozen=True)
class Update:
    """What each batch's optimizer step minimises, and what runs before it is taken."""

    objective: Objective
    loss_fn: LossFn
    penalty: Penalty | None = None
    hooks: Sequence[StepHook] = ()

    def backward(self, model: nn.Module, inputs: Any, labels: torch.Tensor, n_global: int) -> float:
        """Back-propagate this process's part of the global batch's mean loss; returns
        the sum of its rows' losses (without the penalty), for the epoch's train loss."""
        if not len(labels):
            return 0.0
        loss = self.objective(model, inputs, labels, self.loss_fn)
        extra = self.penalty(model, inputs) if self.penalty is not None else 0.0
        # Each process's mean, weighted by its share: the sum over processes is the mean
        # over the global batch.
        ((loss + extra) * (len(labels) / n_global)).backward()
        return loss.item() * len(labels)


def train_epoch(
    state: TrainState,
    batches: Iterable[tuple[Any, torch.Tensor]],
    update: Update,
    callbacks: Sequence[Callback] = (),
) -> float:
    """One optimizer step per global batch: shard, backward, sum the gradients across
    processes, run the hooks, step, tell the callbacks. Returns the epoch's mean train
    loss over all processes' rows."""
    model, group = state.model, state.group
    model.train()
    total, rows_done = 0.0, 0
    for inputs, labels in batches:
        n_global = len(labels)
        inputs, labels = group.shard(inputs, labels)
        state.optimizer.zero_grad(set_to_none=True)
        local_total = update.backward(model, inputs, labels, n_global)
        group.sum_gradients(model)
        for hook in update.hooks:
            hook(model, state.step)
        state.optimizer.step()
        state.step += 1
        total += group.sum(local_total)
        rows_done += n_global
        for callback in callbacks:
            callback.on_batch_end(state, rows_done)
    return total / max(rows_done, 1)


def validation_record(model: nn.Module, evaluate: Evaluate) -> dict[str, float]:
    """``evaluate(model)`` in eval mode without gradients, its names prefixed ``valid_``."""
    model.eval()
    with torch.no_grad():
        report = evaluate(model)
    return {f"valid_{name}": value for name, value in report.items()}


def start_state(model: nn.Module, config: TrainConfig) -> TrainState:
    """A fresh run: the model on the configured device, its optimizer, the seeded batch
    order, and this process's place in the ``torchrun`` group if there is one."""
    device = resolve_device(config.device)
    model.to(device)
    group = Distributed.from_environment(device)
    rng = np.random.default_rng(config.seed)
    if config.sparse_updates:
        if not hasattr(model, "sparse_gradients"):
            raise ConfigError(f"{type(model).__name__} has no sparse updates")
        model.sparse_gradients = True
    optimizer = make_optimizer(
        model, config.optimizer, config.lr, config.momentum, config.weight_decay,
        config.sparse_updates,
    )  # fmt: skip
    return TrainState(model, optimizer, rng, group, device)


def run_epoch(
    state: TrainState,
    batches: BatchSource,
    update: Update,
    evaluate: Evaluate | None,
    callbacks: Sequence[Callback],
) -> dict[str, Any]:
    """Train one epoch and validate: the epoch's record (train loss, validation metrics,
    seconds taken)."""
    started = time.perf_counter()
    record: dict[str, Any] = {"epoch": state.epoch + 1}
    epoch_batches = batches(state.rng, state.device)
    record["train_loss"] = train_epoch(state, epoch_batches, update, callbacks)
    if evaluate is not None:
        record.update(validation_record(state.model, evaluate))
    record["seconds"] = time.perf_counter() - started
    return record


def standard_callbacks(
    config: TrainConfig,
    n_rows: int,
    evaluate: Evaluate | None,
    log_path: str | Path | None,
    on_step: Callable[[int, int], None] | None,
    on_epoch: Callable[[dict], None] | None,
) -> list[Callback]:
    """The callbacks that :func:`fit_loop`'s own arguments ask for, in the order they run."""
    run: list[Callback] = []
    if log_path is not None:
        run.append(JsonlLog(log_path))
    run.append(Progress(n_rows, on_step, on_epoch))
    if evaluate is not None:
        run.append(EarlyStopping(config.monitor, config.patience, MONITORS[config.monitor]))
    return run


def fit_loop(
    model: nn.Module,
    batches: BatchSource,
    n_rows: int,
    evaluate: Evaluate | None,
    config: TrainConfig,
    objective: Objective = clean_objective,
    hooks: Sequence[StepHook] = (),
    penalty: Penalty | None = None,
    log_path: str | Path | None = None,
    on_step: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
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
    callbacks
        Further :class:`~fmadv.training.callbacks.Callback` objects, called after the
        log, progress and early stopping, and saved by the checkpoint if they have state.

    Under ``torchrun`` each process trains on its shard of every global batch and the
    gradients are summed across processes (see :mod:`fmadv.training.distributed`).
    """
    config.validate()
    state = start_state(model, config)
    update = Update(objective, get_loss(config.loss), penalty, hooks)
    run = [*standard_callbacks(config, n_rows, evaluate, log_path, on_step, on_epoch), *callbacks]
    if checkpoint is not None:
        saver = Checkpoint(checkpoint, [*hooks, objective], run)
        if resume:
            saver.restore(state)
        run.append(saver)  # last, so that it saves what the others did to the epoch
    try:
        for callback in run:
            callback.on_train_begin(state)
        while state.epoch < config.epochs and not state.stopped:
            record = run_epoch(state, batches, update, evaluate, run)
            state.epoch += 1
            state.history.records.append(record)
            for callback in run:
                # No short cut: the callbacks after one that asks to stop still see the epoch.
                state.stopped = bool(callback.on_epoch_end(state, record)) or state.stopped
            state.group.barrier()  # the checkpoint is on disk before any process goes on
        for callback in run:
            callback.on_train_end(state)
    finally:
        if config.sparse_updates:
            model.sparse_gradients = False  # the model scores as any other, even if stopped
    return state.history
