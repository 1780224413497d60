"""The ``fmadv`` command line: one typer app, a module per command group.

Each command parses its options, makes one library call and prints the result.
"""

from fmadv.cli import data, fm, image, recommend  # noqa: F401  (each registers its commands)
from fmadv.cli.common import app

__all__ = ["app"]
