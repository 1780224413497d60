"""Damaged copies of model files, for the tests of what loading refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from fmadv.io import load_tensors

DROP = object()  # as a value of ``altered``'s changes: remove the entry


def write_raw(path: Path, tensors: dict[str, torch.Tensor], header: Any) -> Path:
    """A safetensors file whose fmadv metadata is ``header`` as JSON, of any JSON type."""
    payload = {name: tensor.contiguous() for name, tensor in tensors.items()}
    save_file(payload, path, metadata={"fmadv": json.dumps(header)})
    return path


def _apply(entries: dict, changes: dict) -> dict:
    entries = {**entries, **changes}
    return {name: value for name, value in entries.items() if value is not DROP}


def altered(
    source: Path,
    target: Path,
    kind: str,
    tensors: dict[str, Any] | None = None,
    header: dict[str, Any] | None = None,
) -> Path:
    """A copy of the model file ``source`` at ``target`` with some tensors and header
    fields replaced, added, or removed (value :data:`DROP`)."""
    saved_tensors, saved_header = load_tensors(source, kind)
    return write_raw(
        target, _apply(saved_tensors, tensors or {}), _apply(saved_header, header or {})
    )
