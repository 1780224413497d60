"""Progress of long work: a rich bar over the rows of each epoch and one line per epoch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

console = Console()


def epoch_line(record: dict) -> str:
    """One line per epoch: the training loss and the validation metrics, short enough for
    an 80-column terminal (``epoch  12  loss 0.8086  valid auc 0.8369  accuracy 0.7256
    hinge 0.7420  0.9s``)."""
    parts = [f"epoch {record['epoch']:>3}", f"loss {record['train_loss']:.4f}"]
    valid = [
        f"{name} {record[f'valid_{name}']:.4f}"
        for name in ("ndcg", "auc", "accuracy", "hinge")
        if f"valid_{name}" in record
    ]
    if valid:
        parts.append("valid " + "  ".join(valid))
    seconds = record["seconds"]
    # Tenths of a second say nothing about an epoch of minutes; the line stays short.
    parts.append(f"{seconds:.1f}s" if seconds < 100 else f"{seconds:.0f}s")
    return "  ".join(parts)


def progress_bar(quiet: bool, unit: str = "rows") -> Progress:
    """A bar on the terminal, removed when the work ends: left on screen it would show
    the epoch after the last one a run that stops early trained. A log or a pipe gets no
    bar, only the lines printed beside it."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} " + unit),
        TimeElapsedColumn(),
        console=console,
        disable=quiet or not console.is_terminal,
        transient=True,
    )


@dataclass
class EpochProgress:
    """The ``on_step`` and ``on_epoch`` callbacks of the fit loop, drawing one bar."""

    progress: Progress
    task: int
    epochs: int
    quiet: bool

    def on_step(self, done: int, total: int) -> None:
        # The loop knows the rows of an epoch (a ranker's include its negatives).
        self.progress.update(self.task, completed=done, total=total)

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
