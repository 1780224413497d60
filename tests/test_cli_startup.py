"""``fmadv --help`` starts without the library: its overview comes from the sources."""

from __future__ import annotations

import importlib
import subprocess
import sys

from typer.main import get_group

from fmadv.cli import app
from fmadv.cli.apps import COMMAND_MODULES, SUB_APP_MODULES, summaries


def test_the_overview_lists_every_top_level_command_with_its_own_help():
    for module in (*COMMAND_MODULES, *SUB_APP_MODULES.values()):
        importlib.import_module(f"fmadv.cli.{module}")
    loaded = get_group(app).commands
    top_level = {name: command.help for name, command in loaded.items()}
    top_level.pop("data")
    top_level.pop("image")
    assert summaries() == top_level


def test_help_does_not_import_torch():
    script = (
        "import sys\n"
        "from fmadv.cli import app\n"
        "try:\n"
        "    app(['--help'], prog_name='fmadv')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted({'torch', 'pandas', 'scipy'} & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert "compare-topk" in result.stdout
    assert result.stdout.strip().endswith("[]")
