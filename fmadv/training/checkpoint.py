"""Training checkpoints: everything a killed run needs to continue as if never stopped.

The model, the optimizer's state, the batch-order generator, the state of hooks and
objectives that draw random numbers, and the run's progress: history, counters and the
callbacks' state (the best weights so far, for one). Tensors go to safetensors, the rest
to the JSON header; the file is written atomically and loading unpickles nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from fmadv.errors import ModelFileError
from fmadv.io import load_tensors, save_tensors
from fmadv.training.optimizers import Optimizer

CHECKPOINT_FORMAT = "fmadv.checkpoint"


def _flatten_optimizer(optimizer: Optimizer) -> tuple[dict, dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{name}"] = value
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _restore_optimizer(optimizer: Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for key, value in meta["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def has_state(obj: object) -> bool:
    """Whether ``obj`` has state to save and restore (``state_dict``/``load_state_dict``)."""
    return hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")


# Tensor names under these prefixes hold the model, the optimizer and the components;
# any other tensor belongs to ``progress``.
_OWN_PREFIXES = ("model.", "optimizer.", "hook.")


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: Optimizer,
    components: Sequence[object],
    rng_state: dict,
    progress: dict[str, Any],
) -> None:
    """Write a checkpoint. ``components`` are the objects whose state goes with the model
    (the objective and hooks); ``progress`` maps names to JSON-safe values (epoch, step,
    history) or tensors (best weights so far)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    optimizer_tensors, optimizer_meta = _flatten_optimizer(optimizer)
    tensors.update(optimizer_tensors)
    for index, obj in enumerate(filter(has_state, components)):
        tensors.update({f"hook.{index}.{k}": v for k, v in obj.state_dict().items()})
    progress_tensors = {k: v for k, v in progress.items() if torch.is_tensor(v)}
    if any(name.startswith(_OWN_PREFIXES) for name in progress_tensors):
        raise ValueError(f"progress tensor names must not start with {_OWN_PREFIXES}")
    tensors.update(progress_tensors)
    metadata = {
        "progress": {k: v for k, v in progress.items() if k not in progress_tensors},
        "optimizer": optimizer_meta,
        "rng": rng_state,
    }
    save_tensors(path, tensors, metadata, kind=CHECKPOINT_FORMAT)


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: Optimizer,
    components: Sequence[object],
) -> tuple[dict[str, Any], dict]:
    """Restore model, optimizer and components in place; returns (progress, rng state)."""
    tensors, header = load_tensors(path, kind=CHECKPOINT_FORMAT)
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        _restore_optimizer(optimizer, tensors, header["optimizer"])
        for index, obj in enumerate(filter(has_state, components)):
            prefix = f"hook.{index}."
            obj.load_state_dict(
                {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            )
        progress_tensors = {k: v for k, v in tensors.items() if not k.startswith(_OWN_PREFIXES)}
        return {**header["progress"], **progress_tensors}, header["rng"]
    except (KeyError, ValueError, RuntimeError) as err:
        raise ModelFileError(f"{path}: checkpoint does not fit this model or run ({err})") from None
