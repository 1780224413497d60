"""The packages are layered one way: a module imports only from its own layer or below.

Read from the source with ``ast`` (imports inside functions count too), so a new
upward import fails here before it tangles the packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fmadv"
# Bottom to top. Each entry names the top-level modules or packages of ``fmadv`` in it.
LAYERS = [
    ("errors",),
    ("io", "checks", "threat", "sparse", "losses", "metrics", "mips", "plots", "reports"),
    ("data",),
    ("models",),
    ("attacks",),
    ("evaluation",),
    ("training",),
    ("estimators",),
    ("recommend",),
    ("runs",),
    ("cli", "__main__", "__init__"),
]
LAYER_OF = {name: level for level, names in enumerate(LAYERS) for name in names}


def unit_of(path: Path) -> str:
    """The top-level module or package of ``fmadv`` a source file belongs to."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported_units(path: Path) -> set[str]:
    units = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "fmadv" and len(parts) > 1:
                units.add(parts[1])
    return units


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    assert {unit_of(path) for path in SOURCES} <= set(LAYER_OF)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    own = unit_of(path)
    upward = {
        unit for unit in imported_units(path) if unit != own and LAYER_OF[unit] > LAYER_OF[own]
    }
    assert not upward, f"{path.relative_to(PACKAGE)} ({own}) imports upward: {sorted(upward)}"


def test_no_two_units_of_one_layer_import_each_other():
    edges = {
        (unit_of(path), unit)
        for path in SOURCES
        for unit in imported_units(path)
        if unit != unit_of(path)
    }
    mutual = sorted((a, b) for a, b in edges if (b, a) in edges and a < b)
    assert not mutual
