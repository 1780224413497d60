"""What every command group shares: the apps (:mod:`fmadv.cli.apps`), the choices built
from the registries, the user-error decorator, and tables."""

from __future__ import annotations

import enum
import functools
import inspect
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fmadv.attacks import ATTACKS, SUPPORTS, input_attacks
from fmadv.cli.apps import app, data_app, image_app
from fmadv.data.cards import list_cards
from fmadv.data.format import IMAGES, ROWS, DataKind, get_format
from fmadv.errors import ConfigError, FmadvError
from fmadv.losses import GROUP_LOSSES, MARGIN_LOSSES
from fmadv.models.fm_attack import PRECISIONS
from fmadv.runs.folder import RunInterrupted
from fmadv.runs.progress import console
from fmadv.threat import BOXES
from fmadv.training.device import THREADS_ENV, use_threads
from fmadv.training.loop import MONITORS, OPTIMIZERS
from fmadv.training.regularizers import NOISE_ROWS

__all__ = ["app", "console", "data_app", "image_app"]


def choices(name: str, values: Iterable[str]) -> type[enum.Enum]:
    """A typer choice list from a registry's names."""
    return enum.Enum(name, {value: value for value in values}, type=str)


Loss = choices("Loss", {**MARGIN_LOSSES, **GROUP_LOSSES})
Optimizer = choices("Optimizer", OPTIMIZERS)
Monitor = choices("Monitor", MONITORS)
AttackName = choices("AttackName", ATTACKS)
InputAttack = choices("InputAttack", input_attacks())
Support = choices("Support", SUPPORTS)
BoxConvention = choices("BoxConvention", BOXES)
BOX_HELP = (
    "How the attack's step meets the input box: project (the stated norm reaches the model "
    "wherever the box leaves room), clip (shortened by the box) or none (leaves the box)."
)
NoiseRows = choices("NoiseRows", NOISE_ROWS)
Precision = choices("Precision", PRECISIONS)
DatasetName = choices("DatasetName", (card.name for card in list_cards()))


def datasets_holding(name: str, kind: DataKind) -> type[enum.Enum]:
    """A typer choice list of the registered datasets that hold ``kind`` (FM rows or
    images): a command offers only the datasets it can train or evaluate on."""
    return choices(name, (c.name for c in list_cards() if get_format(c.format).kind is kind))


FMDataset = datasets_holding("FMDataset", ROWS)
ImageDataset = datasets_holding("ImageDataset", IMAGES)


def user_errors(command):
    """Report errors the user can fix as one line on stderr and exit with code 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (FmadvError, OSError) as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None

    return wrapper


Threads = Annotated[
    int | None,
    typer.Option(
        envvar=THREADS_ENV,
        min=1,
        help="CPU threads of the run; default: the CPUs this process may use (its affinity, "
        "capped by a container's CPU quota).",
        show_default=False,
    ),
]


def threaded(command):
    """A command that computes: ``--threads`` (or ``$FMADV_THREADS``) sets torch's CPU
    threads before it runs. The option is added to the command's signature here, so
    every such command has it under one name and help."""
    signature = inspect.signature(command, eval_str=True)  # typer reads the objects
    option = inspect.Parameter(
        "threads", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Threads
    )

    @functools.wraps(command)
    def wrapper(*args, threads: int | None = None, **kwargs):
        use_threads(threads)
        return command(*args, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), option])
    return wrapper


def resumable(command):
    """A training command that a Ctrl-C stops with one line on stderr: what the run
    folder keeps and the command that continues the run; exit code 130 (as for SIGINT)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except RunInterrupted as interrupted:
            typer.echo(f"{interrupted}; resume with: {resume_command()}", err=True)
            raise typer.Exit(130) from None

    return wrapper


def resume_command() -> str:
    """The command line that is running, made to continue its run: with ``--resume``,
    without ``--overwrite`` (which would replace the run instead). Named ``fmadv``, the
    program that ``python -m fmadv`` also runs."""
    dropped = ("--overwrite", "--no-overwrite", "--resume", "--no-resume")
    args = [arg for arg in sys.argv[1:] if arg not in dropped]
    return shlex.join(["fmadv", *args, "--resume"])


DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="FMADV_DATA_DIR",
        help="Folder holding dataset copies (one subfolder per dataset); "
        "default: the download cache ~/.cache/fmadv.",
    ),
]
TrainDevice = Annotated[
    str, typer.Option(help="Where to train: auto (CUDA when available), cpu or cuda.")
]
Device = Annotated[
    str, typer.Option(help="Where to run the model: cpu, cuda, or auto (CUDA when available).")
]

# The options every training command shares.
Resume = Annotated[
    bool,
    typer.Option(
        help="Continue the run in --out from its checkpoint, with the settings it was "
        "started with (more --epochs, another --patience or --device are fine)."
    ),
]
Overwrite = Annotated[bool, typer.Option(help="Replace the run in --out, finished or not.")]
Quiet = Annotated[bool, typer.Option(help="No progress bar or tables.")]


def defaults_of(function) -> dict:
    """The defaults of a library function's parameters: a command that calls it once
    takes its option defaults from here, so the two never disagree."""
    return {name: p.default for name, p in inspect.signature(function).parameters.items()}


def number_text(values: Iterable[float]) -> str:
    """The comma-separated form of a default list of numbers, for an option's default."""
    return ",".join(f"{value:g}" for value in values)


def number_list(text: str, option: str) -> tuple[float, ...]:
    """Comma-separated numbers, for options such as ``--eps-grid``."""
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{option} must be comma-separated numbers, got {text!r}") from None


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.4f}"


def metrics_table(
    title: str, rows: dict[str, dict[str, float]], caption: str | None = None
) -> Table:
    """A rich table: one row per split, one column per metric."""
    table = Table(title=title, caption=caption)
    table.add_column("split")
    metrics = list(next(iter(rows.values())))
    for name in metrics:
        table.add_column(name, justify="right")
    for split_name, values in rows.items():
        table.add_row(split_name, *(_number(values[m]) for m in metrics))
    return table
