"""What a training run exposes to the outside, and the callbacks that act on it.

:func:`fmadv.training.loop.fit_loop` calls every :class:`Callback` at four moments:
``on_train_begin(state)``, ``on_batch_end(state, rows_done)`` after each optimizer step,
``on_epoch_end(state, record)`` after each epoch (a true return asks the run to stop),
and ``on_train_end(state)`` once the epochs are over. The callbacks of a run see the
same :class:`TrainState` and run in the order they are given.

A callback whose behaviour depends on earlier epochs defines ``state_dict()`` and
``load_state_dict(state)`` so that :class:`Checkpoint` saves and resumes it. Its state
is a flat dict of tensors and JSON-safe values whose keys share the checkpoint with the
other callbacks' keys, so each callback picks keys no other one uses.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fmadv.errors import ModelFileError
from fmadv.training.checkpoint import has_state, load_checkpoint, save_checkpoint
from fmadv.training.distributed import Distributed
from fmadv.training.optimizers import Optimizer


@dataclass
class History:
    """Per-epoch records of a run, the best epoch and its monitored value."""

    records: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_value: float | None = None


@dataclass
class TrainState:
    """The model and everything else that changes as a run trains."""

    model: nn.Module
    optimizer: Optimizer
    rng: np.random.Generator  # decides the batch order of every epoch
    group: Distributed
    device: torch.device
    history: History = field(default_factory=History)
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    stopped: bool = False  # a callback asked to stop


class Callback:
    """Does nothing at every moment of a run; subclasses override the moments they need."""

    def on_train_begin(self, state: TrainState) -> None:
        pass

    def on_batch_end(self, state: TrainState, rows_done: int) -> None:
        pass

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> bool:
        """Act on the epoch's ``record``; return True to stop training after it."""
        return False

    def on_train_end(self, state: TrainState) -> None:
        pass


class EarlyStopping(Callback):
    """Tracks the best epoch by ``record["valid_" + monitor]``, stops after ``patience``
    epochs without gain (0: never) and restores the best epoch's weights at the end."""

    def __init__(self, monitor: str, patience: int, larger_is_better: bool) -> None:
        self.key = f"valid_{monitor}"
        self.patience = patience
        self.larger_is_better = larger_is_better
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.epochs_without_gain = 0

    def improves(self, value: float, best: float | None) -> bool:
        return best is None or (value > best if self.larger_is_better else value < best)

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> bool:
        value = record[self.key]
        if self.improves(value, state.history.best_value):
            state.history.best_epoch, state.history.best_value = record["epoch"], value
            self.best_weights = copy.deepcopy(state.model.state_dict())
            self.epochs_without_gain = 0
            return False
        self.epochs_without_gain += 1
        return bool(self.patience) and self.epochs_without_gain >= self.patience

    def on_train_end(self, state: TrainState) -> None:
        if self.best_weights is not None:
            state.model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        weights = self.best_weights or {}
        return {
            "epochs_without_gain": self.epochs_without_gain,
            **{f"best.{name}": tensor for name, tensor in weights.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epochs_without_gain = state["epochs_without_gain"]
        prefix = "best."
        weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        self.best_weights = weights or None


class JsonlLog(Callback):
    """Appends each epoch's record as one JSON line to ``path`` (first process only); a
    fresh run starts the file empty, a resumed one continues it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_train_begin(self, state: TrainState) -> None:
        if not state.group.is_main:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if state.epoch == 0:
            self.path.write_text("", encoding="utf-8")

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> bool:
        if state.group.is_main:
            # Opened per record, so a killed run leaves every finished epoch on disk.
            with open(self.path, "a", encoding="utf-8") as log:
                log.write(json.dumps(record) + "\n")
        return False


class Progress(Callback):
    """Reports progress to plain functions: ``on_step(rows_done, rows_total)`` after each
    optimizer step and ``on_epoch(record)`` after each epoch."""

    def __init__(
        self,
        rows_total: int,
        on_step: Callable[[int, int], None] | None = None,
        on_epoch: Callable[[dict], None] | None = None,
    ) -> None:
        self.rows_total = rows_total
        self.on_step = on_step
        self.on_epoch = on_epoch

    def on_batch_end(self, state: TrainState, rows_done: int) -> None:
        if self.on_step is not None:
            self.on_step(rows_done, self.rows_total)

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> bool:
        if self.on_epoch is not None:
            self.on_epoch(record)
        return False


class Checkpoint(Callback):
    """Writes the whole training state to ``path`` after every epoch (first process
    only, atomically); :meth:`restore` continues a run from it as if it had never stopped.

    The state is the model, the optimizer, the batch-order generator, the counters and
    history of :class:`TrainState`, the state of ``components`` (the objective and hooks,
    whose random generators must resume where they were) and of ``callbacks``. Give it
    last, so that it saves what the other callbacks did at the end of the epoch.
    """

    def __init__(
        self, path: str | Path, components: Sequence[object], callbacks: Sequence[Callback]
    ) -> None:
        self.path = Path(path)
        self.components = list(components)
        self.callbacks = [c for c in callbacks if has_state(c)]

    def restore(self, state: TrainState) -> None:
        """Load the saved state into ``state`` and the callbacks, when the file exists."""
        if not self.path.exists():
            return
        saved, rng_state = load_checkpoint(self.path, state.model, state.optimizer, self.components)
        try:
            state.rng.bit_generator.state = rng_state
            state.epoch, state.step = saved["epoch"], saved["step"]
            state.stopped = saved["stopped"]
            state.history = History(saved["history"], saved["best_epoch"], saved["best_value"])
            for callback in self.callbacks:
                callback.load_state_dict(saved)
        except (KeyError, TypeError, ValueError) as err:
            raise ModelFileError(f"{self.path}: checkpoint does not fit this run ({err})") from None

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> bool:
        if state.group.is_main:
            save_checkpoint(
                self.path, state.model, state.optimizer, self.components,
                state.rng.bit_generator.state, self.progress(state),
            )  # fmt: skip
        return False

    def progress(self, state: TrainState) -> dict[str, Any]:
        """The run's counters and history, merged with the callbacks' state."""
        progress = {
            "epoch": state.epoch, "step": state.step, "history": state.history.records,
            "best_epoch": state.history.best_epoch, "best_value": state.history.best_value,
            "stopped": state.stopped,
        }  # fmt: skip
        for callback in self.callbacks:
            progress.update(callback.state_dict())
        return progress
