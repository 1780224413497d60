"""fmadv data list, fetch, verify and info."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from fmadv.cli.common import (
    DataDir,
    DatasetName,
    console,
    data_app,
    user_errors,
)


@data_app.command("list")
@user_errors
def data_list(data_dir: DataDir = None) -> None:
    """Registered datasets and whether a verified local copy exists."""
    from fmadv.data import dataset_listing, resolve_data_dir

    root = resolve_data_dir(data_dir)
    rows = dataset_listing(root)
    table = Table(title=f"datasets (data dir: {root})")
    for column in rows[0]:
        table.add_column(column)
    for row in rows:
        table.add_row(*row.values())
    console.print(table)


@data_app.command("fetch")
@user_errors
def data_fetch(
    name: Annotated[DatasetName, typer.Argument(help="Dataset name.")], data_dir: DataDir = None
) -> None:
    """Download a dataset into the data dir, verifying every checksum."""
    from fmadv.data import fetch, get_card, resolve_data_dir

    card = get_card(name.value)
    if not card.needs_files:
        typer.echo(_generated(card.name, "fetch"))
        return
    root = resolve_data_dir(data_dir)
    fetch(card, root)
    console.print(f"{card.name}: verified copy in {root / card.directory}")


@data_app.command("verify")
@user_errors
def data_verify(
    name: Annotated[DatasetName, typer.Argument(help="Dataset name.")], data_dir: DataDir = None
) -> None:
    """Check the local copy of a dataset against its card's checksums (exit 1 if not ok)."""
    from fmadv.data import get_card, resolve_data_dir, verify

    card = get_card(name.value)
    if not card.needs_files:
        typer.echo(_generated(card.name, "verify"))
        return
    status = verify(card, resolve_data_dir(data_dir))
    for file_name, state in status.items():
        typer.echo(f"{state:8s} {file_name}")
    if any(state != "ok" for state in status.values()):
        raise typer.Exit(1)


@data_app.command("info")
@user_errors
def data_info(
    name: Annotated[DatasetName, typer.Argument(help="Dataset name.")], data_dir: DataDir = None
) -> None:
    """A dataset's card (source, license, citation) and the state of its local copy."""
    from fmadv.data import get_card, info, resolve_data_dir

    details = info(get_card(name.value), resolve_data_dir(data_dir))
    typer.echo(json.dumps(details, indent=2, default=str))


def _generated(name: str, action: str) -> str:
    return f"{name} is generated in memory: it has no files to {action}"
