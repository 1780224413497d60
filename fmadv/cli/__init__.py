"""The ``fmadv`` command line: one typer app, a module per command group.

Each command parses its options, makes one library call and prints the result. The
command modules load on first use (:mod:`fmadv.cli.apps`).
"""

from fmadv.cli.apps import app

__all__ = ["app"]
