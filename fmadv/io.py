"""Model files: tensors in safetensors, configuration and feature map as JSON inside it.

One file per model, so the tensors and the description of what they mean cannot drift
apart, written to a temporary file and renamed into place so that a crash never leaves a
half-written model. Loading parses a JSON header and raw tensors: nothing is unpickled.

A file can be damaged or hand-edited, so a loader checks what it reads before using it:
:func:`header_value` for the JSON header, :func:`check_tensors`
for the tensors. Each failure is a :class:`ModelFileError` that names the file.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from fmadv.errors import FmadvError, ModelFileError

FORMAT = "fmadv.fm"
FORMAT_VERSION = 1
MODEL_FILE_NAME = "model.safetensors"  # the model of a run folder
_METADATA_KEY = "fmadv"
PICKLE_REFUSAL = (
    "a Python pickle; fmadv never loads pickles (they can run code): "
    "export the model as safetensors"
)


class WriteError(FmadvError, OSError):
    """A destination that cannot be written. An OSError, so that code handling file
    system errors still catches it; an FmadvError, so that it reads as the user's to fix."""


# -- writing ------------------------------------------------------------------------
_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process's umask. Linux reports it in /proc; elsewhere it can only be read by
    setting it, so it is set back at once, under a lock so that two writers never see
    each other's temporary 0."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        umask = os.umask(0)
        os.umask(umask)
    return umask


def _new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the umask."""
    return 0o666 & ~_umask()


def _temporary_beside(path: Path) -> str:
    """An empty temporary file in ``path``'s folder (created if needed), so that the
    final rename never crosses file systems."""
    if path.is_dir():
        raise WriteError(f"{path} is a folder; give the name of a file to write")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as err:
        # The error names the temporary file, which the user never asked for.
        raise WriteError(
            f"cannot write {path}: cannot create files in {folder} ({err.strerror})"
        ) from None
    os.close(fd)
    return temp


def atomic_write(path: str | Path, write) -> None:
    """Call ``write(temp_path)``, flush it to disk, then rename it onto ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was. The
    file gets the mode a plain ``open()`` would give it (the umask applies).
    """
    path = Path(path)
    temp = _temporary_beside(path)
    try:
        write(temp)
        with open(temp, "rb+") as written:
            os.fsync(written.fileno())
        # mkstemp creates the file private (0600), whatever the umask says.
        os.chmod(temp, _new_file_mode())
        os.replace(temp, path)
    except BaseException as err:
        Path(temp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename == temp:  # a full disk, say
            raise WriteError(f"cannot write {path} ({err.strerror})") from None
        raise


def save_tensors(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict, kind: str = FORMAT
) -> None:
    """Write ``tensors`` and the JSON-safe ``metadata`` to one safetensors file, atomically."""
    header = {"format": kind, "format_version": FORMAT_VERSION, **metadata}
    payload = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    text = json.dumps(header, sort_keys=True)
    atomic_write(path, lambda temp: save_file(payload, temp, metadata={_METADATA_KEY: text}))


# -- reading ------------------------------------------------------------------------
def model_file(path: str | Path) -> Path:
    """``path``, or the model file inside it when ``path`` is a run folder."""
    path = Path(path)
    if not path.is_dir():
        return path
    inside = path / MODEL_FILE_NAME
    if not inside.is_file():
        raise ModelFileError(f"{path} is a folder without {MODEL_FILE_NAME}")
    return inside


def load_tensors(path: str | Path, kind: str = FORMAT) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a file written by :func:`save_tensors`; :class:`ModelFileError` otherwise.

    The header is checked to be a JSON object of format ``kind``; its other fields and
    the tensors are for the caller to check.
    """
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder, not a model file")
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        with safe_open(path, framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        # Sniffed only after safetensors refused the file: a safetensors header can
        # start with the same bytes as a pickle.
        if _is_pickle(path):
            raise ModelFileError(f"{path}: {PICKLE_REFUSAL}") from None
        raise ModelFileError(f"{path}: not a readable model file ({err})") from None
    return tensors, _header(path, metadata, kind)


def _is_pickle(path: Path) -> bool:
    """Whether ``path`` looks like a pickle (protocol 2 to 5), or like a zip archive
    holding one (``torch.save``'s format). Only bytes and zip entry names are read."""
    try:
        with open(path, "rb") as file:
            start = file.read(2)
        if len(start) == 2 and start[0] == 0x80 and 2 <= start[1] <= 5:
            return True
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            return any(PurePosixPath(name).name == "data.pkl" for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _header(path: Path, metadata: dict[str, str], kind: str) -> dict:
    """The JSON header of a safetensors file's metadata, checked to be of ``kind``."""
    try:
        header = json.loads(metadata[_METADATA_KEY])
    except (KeyError, json.JSONDecodeError):
        raise ModelFileError(f"{path}: a safetensors file, but not an fmadv model") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: the metadata is {json_kind(header)}, expected an object")
    if header.get("format") != kind:
        raise ModelFileError(f"{path}: format {header.get('format')!r}, expected {kind!r}")
    version = header_value(path, header, "format_version", int, default=0)
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path}: written by a newer fmadv (format version {version})")
    return header


# -- checking what was read -----------------------------------------------------------
_JSON_KINDS = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}
_REQUIRED = object()


def json_kind(value: Any) -> str:
    """What ``value`` is, in JSON's words: "an object", "a list", "a string"..."""
    return _JSON_KINDS.get(type(value), type(value).__name__)


def _is_kind(value: Any, kind: type) -> bool:
    if isinstance(value, bool):  # a bool is an int to Python, not to JSON
        return kind is bool
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


def check_kind(path: Path, name: str, value: Any, kind: type, minimum: float | None = None):
    """``value`` when it is of JSON ``kind`` (dict, list, str, int, float, bool) and, for
    a number, no less than ``minimum``."""
    if not _is_kind(value, kind):
        raise ModelFileError(f"{path}: {name} is {json_kind(value)}, expected {_JSON_KINDS[kind]}")
    if minimum is not None and value < minimum:
        raise ModelFileError(f"{path}: {name} must be >= {minimum}, got {value}")
    return value


def header_value(
    path: Path,
    header: Mapping[str, Any],
    name: str,
    kind: type,
    default: Any = _REQUIRED,
    minimum: float | None = None,
) -> Any:
    """``header[name]``, checked by :func:`check_kind`; ``default``, when one is given,
    for an absent or null value."""
    value = header.get(name)
    if value is None and default is not _REQUIRED:
        return default
    if name not in header:
        raise ModelFileError(f"{path}: the metadata has no {name!r}")
    return check_kind(path, repr(name), value, kind, minimum)


def history_records(path: Path, header: Mapping[str, Any]) -> list[dict]:
    """The per-epoch records saved under ``history`` (none in a file without them)."""
    records = header_value(path, header, "history", list, default=[])
    for record in records:
        check_kind(path, "a 'history' record", record, dict)
    return records


def _shape_text(shape: Sequence[int]) -> str:
    return str(list(shape)) + ("" if len(shape) else " (a scalar)")


def check_tensors(
    path: Path, tensors: Mapping[str, torch.Tensor], shapes: Mapping[str, Sequence[int]]
) -> None:
    """The tensors are exactly those of ``shapes``, each of its shape, floating point and
    finite: a NaN weight would turn every prediction into NaN."""
    missing = [name for name in shapes if name not in tensors]
    if missing:
        raise ModelFileError(f"{path}: missing tensors {missing}")
    unexpected = sorted(set(tensors) - set(shapes))
    if unexpected:
        raise ModelFileError(f"{path}: unexpected tensors {unexpected}")
    for name, shape in shapes.items():
        tensor = tensors[name]
        if tuple(tensor.shape) != tuple(shape):
            raise ModelFileError(
                f"{path}: tensor {name!r} has shape {_shape_text(tensor.shape)}, "
                f"expected {_shape_text(shape)}"
            )
        if not tensor.is_floating_point():
            raise ModelFileError(
                f"{path}: tensor {name!r} has dtype {tensor.dtype}, expected floating point"
            )
        if not torch.isfinite(tensor).all():
            raise ModelFileError(f"{path}: tensor {name!r} holds NaN or infinite values")
