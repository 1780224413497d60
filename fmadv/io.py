"""Model files: tensors in safetensors, configuration and feature map as JSON inside it.

One file per model, so the tensors and the description of what they mean cannot drift
apart, written to a temporary file and renamed into place so that a crash never leaves a
half-written model. Loading parses a JSON header and raw tensors: nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from fmadv.errors import ModelFileError

FORMAT = "fmadv.fm"
FORMAT_VERSION = 1
_METADATA_KEY = "fmadv"


def atomic_write(path: str | Path, write) -> None:
    """Call ``write(temp_path)``, flush it to disk, then rename it onto ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(temp)
        with open(temp, "rb+") as written:
            os.fsync(written.fileno())
        # mkstemp creates the file private (0600); an output should read like any other.
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def save_tensors(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict, kind: str = FORMAT
) -> None:
    """Write ``tensors`` and the JSON-safe ``metadata`` to one safetensors file, atomically."""
    header = {"format": kind, "format_version": FORMAT_VERSION, **metadata}
    payload = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    text = json.dumps(header, sort_keys=True)
    atomic_write(path, lambda temp: save_file(payload, temp, metadata={_METADATA_KEY: text}))


def load_tensors(path: str | Path, kind: str = FORMAT) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a file written by :func:`save_tensors`; :class:`ModelFileError` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        with safe_open(path, framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(f"{path}: not a readable model file ({err})") from None
    try:
        header = json.loads(metadata[_METADATA_KEY])
    except (KeyError, json.JSONDecodeError):
        raise ModelFileError(f"{path}: a safetensors file, but not an fmadv model") from None
    if header.get("format") != kind:
        raise ModelFileError(f"{path}: format {header.get('format')!r}, expected {kind!r}")
    if header.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: written by a newer fmadv (format version {header['format_version']})"
        )
    return tensors, header
