"""A run folder: the one place that decides what a run writes and where.

Every training command, FM or image, writes the same files into one folder: the settings
it was started with (``run.json``), the model (``model.safetensors``), the per-epoch
records (``metrics.jsonl``), the resumable training state (``checkpoint.safetensors``)
and a human-readable ``summary.json``. Each is written atomically, so a crash never
leaves a half-written file behind.

A folder holds one run. Starting another in it would lose the first, so that takes
``overwrite``; continuing it (``resume``) takes the settings it was started with, so
that the epochs before and after the pause train the same model on the same rows.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmadv.errors import ConfigError
from fmadv.io import MODEL_FILE_NAME, atomic_write

# Settings a resumed run may change: how long it trains, when it stops early and on
# which device do not change what the epochs already done have learned.
RESUMABLE_CHANGES = frozenset({"epochs", "patience", "device"})


@dataclass(frozen=True)
class RunFolder:
    """The files of one training run under ``path``."""

    path: Path

    @property
    def settings(self) -> Path:
        return self.path / "run.json"

    @property
    def model(self) -> Path:
        return self.path / MODEL_FILE_NAME

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.safetensors"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    def files(self) -> tuple[Path, ...]:
        return (self.settings, self.model, self.metrics, self.checkpoint, self.summary)

    def check_start(self, settings: dict, *, resume: bool, overwrite: bool) -> None:
        """Refuse, before any data is read or file written, a run that cannot start here:
        ``out`` is a file, a run is already here and neither ``resume`` nor ``overwrite``
        says what to do with it, or ``resume`` asks to continue it with other settings.

        ``settings`` are what the run records in ``run.json``: a flat mapping of the
        training settings, and under ``"data"`` the rows it trains on.
        """
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"--out {self.path} is a file; give a folder")
        if resume and overwrite:
            raise ConfigError(
                f"--resume continues the run in {self.path}, --overwrite replaces it: give one"
            )
        if resume and self.checkpoint.exists():
            self._check_same_settings(settings)
        elif not overwrite and self.model.exists():
            raise ConfigError(
                f"{self.path} holds a finished run; give --out NEW for a new run, "
                "or --overwrite to replace it"
            )
        elif not overwrite and self.checkpoint.exists():
            raise ConfigError(
                f"{self.path} holds an unfinished run; --resume continues it, "
                "--out NEW starts a new run, --overwrite replaces it"
            )

    def start(self, settings: dict, *, overwrite: bool) -> RunFolder:
        """Make the folder, remove the files of the run it replaces (``overwrite``), and
        record ``settings`` (after :meth:`check_start` and once the data has loaded, so
        that bad input leaves nothing behind)."""
        self.path.mkdir(parents=True, exist_ok=True)
        if is_main_process():
            if overwrite:
                for path in self.files():
                    path.unlink(missing_ok=True)
            write_json(self.settings, settings)
        return self

    @contextlib.contextmanager
    def training(self) -> Iterator[RunFolder]:
        """The training of this run: a Ctrl-C inside becomes :class:`RunInterrupted`,
        which says what the folder keeps."""
        try:
            yield self
        except KeyboardInterrupt:
            raise RunInterrupted(self) from None

    def write_summary(self, summary: dict) -> None:
        write_json(self.summary, summary)

    def _check_same_settings(self, settings: dict) -> None:
        if not self.settings.exists():
            return  # a run of an earlier release: it recorded no settings to compare
        try:
            recorded = json.loads(self.settings.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{self.settings}: not readable JSON ({err})") from None
        changes = changed_settings(recorded, as_json(settings))
        if changes:
            raise ConfigError(
                f"{self.path} was started with other settings ({', '.join(changes)}); "
                "resume with the run's settings, or start a new run with --out NEW "
                "or --overwrite"
            )


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run. Its folder keeps the checkpoint of the last finished epoch,
    if one finished, from which ``resume`` continues."""

    def __init__(self, folder: RunFolder) -> None:
        self.folder = folder
        if folder.checkpoint.exists():
            kept = f"{folder.path} keeps the checkpoint of the last finished epoch"
        else:
            kept = f"no epoch finished, {folder.path} has no checkpoint yet"
        super().__init__(f"interrupted: {kept}")


def changed_settings(old: dict, new: dict) -> list[str]:
    """``"name old -> new"`` for each setting that differs between two records (nested
    ones named by their path, such as ``data.options.seed``), except the
    :data:`RESUMABLE_CHANGES`."""
    old, new = _flat(old), _flat(new)
    names = [*old, *(name for name in new if name not in old)]
    return [
        f"{name} {old.get(name)} -> {new.get(name)}"
        for name in names
        if name not in RESUMABLE_CHANGES and old.get(name) != new.get(name)
    ]


def _flat(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for name, value in record.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{name}."))
        else:
            flat[prefix + name] = value
    return flat


def as_json(payload: dict) -> dict:
    """``payload`` as it reads back from JSON (paths as text, tuples as lists), so that
    settings compare equal to those recorded."""
    return json.loads(_json_text(payload))


def write_json(path: Path, payload: dict) -> None:
    """``payload`` as indented JSON, written atomically."""
    text = _json_text(payload) + "\n"
    atomic_write(path, lambda temp: Path(temp).write_text(text))


def _json_text(payload: dict) -> str:
    return json.dumps(payload, indent=2, default=str)


def is_main_process() -> bool:
    """False in the processes of a ``torchrun`` group other than the first: only the
    first one writes files and shows progress."""
    return int(os.environ.get("RANK", "0")) == 0
