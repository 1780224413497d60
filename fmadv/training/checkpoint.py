"""Training checkpoints: everything a killed run needs to continue as if never stopped.

The model, the optimizer's state, the best weights so far, the batch-order generator,
the state of hooks and objectives that draw random numbers, and the history. Tensors go
to safetensors, the rest to the JSON header; the file is written atomically and loading
unpickles nothing.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from fmadv.errors import ModelFileError
from fmadv.io import load_tensors, save_tensors

CHECKPOINT_FORMAT = "fmadv.checkpoint"


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{name}"] = value
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for key, value in meta["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _stateful(objects) -> list:
    return [o for o in objects if hasattr(o, "state_dict") and hasattr(o, "load_state_dict")]


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    progress: dict,
    best_state: dict | None,
    rng_state: dict,
    stateful: list,
) -> None:
    """Write a checkpoint: ``progress`` is JSON-safe (epoch, step, history, best)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if best_state is not None:
        tensors.update({f"best.{k}": v for k, v in best_state.items()})
    optimizer_tensors, optimizer_meta = _flatten_optimizer(optimizer)
    tensors.update(optimizer_tensors)
    for index, obj in enumerate(_stateful(stateful)):
        tensors.update({f"hook.{index}.{k}": v for k, v in obj.state_dict().items()})
    metadata = {"progress": progress, "optimizer": optimizer_meta, "rng": rng_state}
    save_tensors(path, tensors, metadata, kind=CHECKPOINT_FORMAT)


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    stateful: list,
) -> tuple[dict, dict | None, dict]:
    """Restore model, optimizer and hooks in place; returns (progress, best_state, rng)."""
    tensors, header = load_tensors(path, kind=CHECKPOINT_FORMAT)
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
        _restore_optimizer(optimizer, tensors, header["optimizer"])
        for index, obj in enumerate(_stateful(stateful)):
            prefix = f"hook.{index}."
            obj.load_state_dict(
                {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            )
        return header["progress"], copy.deepcopy(best), header["rng"]
    except (KeyError, ValueError, RuntimeError) as err:
        raise ModelFileError(f"{path}: checkpoint does not fit this model or run ({err})") from None
