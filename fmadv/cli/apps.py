"""The typer apps, light enough that ``fmadv --help`` starts without torch.

A command's module (and through it torch, pandas and the library) loads the first
time the command runs or asks for its own help, and no other command's. The overview
that ``fmadv --help`` prints reads each top-level command's name and summary from its
module's source.
"""

from __future__ import annotations

import ast
import functools
import importlib
from pathlib import Path

import typer
from typer.core import TyperCommand, TyperGroup

# The modules that register commands, in the order the overview lists them, and the
# sub-apps' modules.
COMMAND_MODULES = ("fm", "recommend")
SUB_APP_MODULES = {"data": "data", "image": "image"}


class LazyCommands(TyperGroup):
    """The top-level group: a command's module loads when the command is asked for."""

    _overview = False

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return list(dict.fromkeys([*summaries(), *super().list_commands(ctx)]))

    def get_command(self, ctx: typer.Context, name: str) -> TyperCommand | None:
        if self._overview and name in summaries():
            return TyperCommand(name, help=summaries()[name])
        module = SUB_APP_MODULES.get(name) or _module_of().get(name)
        if not self._overview and module is not None:
            self.commands.update(_commands_with(module))
        return super().get_command(ctx, name)

    def format_help(self, ctx: typer.Context, formatter) -> None:
        self._overview = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._overview = False


@functools.cache
def _commands_with(module: str) -> dict:
    """The click commands of every module loaded so far, ``module`` loaded first."""
    importlib.import_module(f"fmadv.cli.{module}")
    return typer.main.get_group(app).commands


def summaries() -> dict[str, str]:
    """{command name: its docstring} of every top-level command."""
    return {name: doc for name, (_, doc) in _sources().items()}


def _module_of() -> dict[str, str]:
    return {name: module for name, (module, _) in _sources().items()}


@functools.cache
def _sources() -> dict[str, tuple[str, str]]:
    """{command name: (module, docstring)} of every ``@app.command`` of the command
    modules, read from their sources."""
    found = {}
    for module in COMMAND_MODULES:
        tree = ast.parse(Path(__file__).with_name(f"{module}.py").read_text(encoding="utf-8"))
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef):
                continue
            for decorator in node.decorator_list:
                if _is_app_command(decorator):
                    args = decorator.args
                    name = args[0].value if args else node.name.replace("_", "-")
                    found[name] = (module, ast.get_docstring(node) or "")
    return found


def _is_app_command(decorator: ast.expr) -> bool:
    """``@app.command()`` or ``@app.command("name")`` (not a sub-app's command)."""
    return (
        isinstance(decorator, ast.Call)
        and isinstance(decorator.func, ast.Attribute)
        and decorator.func.attr == "command"
        and isinstance(decorator.func.value, ast.Name)
        and decorator.func.value.id == "app"
    )


app = typer.Typer(
    cls=LazyCommands,
    help="Robust factorization-machine recommenders.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
data_app = typer.Typer(help="List, fetch, verify and describe datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
image_app = typer.Typer(
    help="LeNet and MLP image classifiers through the same attacks and training core.",
    no_args_is_help=True,
)
app.add_typer(image_app, name="image")
