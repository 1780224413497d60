"""Run the fmadv command line from a checkout: ``python cli.py train``."""

from fmadv.cli import app

app(prog_name="fmadv")
