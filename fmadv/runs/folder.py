"""A run folder: the one place that decides what a run writes and where.

Every training command, FM or image, writes the same files into one folder: the model
(``model.safetensors``), the per-epoch records (``metrics.jsonl``), the resumable
training state (``checkpoint.safetensors``) and a human-readable ``summary.json``. Each
is written atomically, so a crash never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from fmadv.io import atomic_write


@dataclass(frozen=True)
class RunFolder:
    """The files of one training run under ``path``."""

    path: Path

    @property
    def model(self) -> Path:
        return self.path / "model.safetensors"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.safetensors"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    def create(self) -> RunFolder:
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def write_summary(self, summary: dict) -> None:
        write_json(self.summary, summary)


def write_json(path: Path, payload: dict) -> None:
    """``payload`` as indented JSON, written atomically."""
    text = json.dumps(payload, indent=2, default=str) + "\n"
    atomic_write(path, lambda temp: Path(temp).write_text(text))


def is_main_process() -> bool:
    """False in the processes of a ``torchrun`` group other than the first: only the
    first one writes files and shows progress."""
    return int(os.environ.get("RANK", "0")) == 0
