"""``python -m fmadv`` runs the command line."""

from fmadv.cli import app

app(prog_name="fmadv")
