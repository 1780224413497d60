"""Progress of long work: a rich bar over the rows of each epoch and one line per epoch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

console = Console()


def epoch_line(record: dict) -> str:
    """One short line per epoch: the training loss and the validation metrics."""
    parts = [f"epoch {record['epoch']:>3}", f"loss {record['train_loss']:.4f}"]
    for name in ("auc", "accuracy", "hinge"):
        if f"valid_{name}" in record:
            parts.append(f"valid {name} {record[f'valid_{name}']:.4f}")
    parts.append(f"{record['seconds']:.1f}s")
    return "  ".join(parts)


def progress_bar(quiet: bool, unit: str = "rows") -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} " + unit),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )


@dataclass
class EpochProgress:
    """The ``on_step`` and ``on_epoch`` callbacks of the fit loop, drawing one bar."""

    progress: Progress
    task: int
    epochs: int
    quiet: bool

    def on_step(self, done: int, total: int) -> None:
        self.progress.update(self.task, completed=done)

    def on_epoch(self, record: dict) -> None:
        if not self.quiet:
            self.progress.console.print(epoch_line(record))
        if record["epoch"] < self.epochs:
            description = f"epoch {record['epoch'] + 1}/{self.epochs}"
            self.progress.update(self.task, completed=0, description=description)

    def callbacks(self) -> dict:
        return {"on_step": self.on_step, "on_epoch": self.on_epoch}


@contextlib.contextmanager
def epoch_progress(quiet: bool, epochs: int, rows: int) -> Iterator[EpochProgress]:
    """A bar over ``rows`` per epoch, for ``epochs`` epochs (nothing shown when quiet)."""
    with progress_bar(quiet) as progress:
        task = progress.add_task(f"epoch 1/{epochs}", total=rows)
        yield EpochProgress(progress, task, epochs, quiet)
