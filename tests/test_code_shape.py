"""The shape of the code, checked: dependencies point one way, modules and functions stay a
size a newcomer reads in one go."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("curator", "classifier", "db")
#: About 500 lines a module and 80 a function; a command's typer option list is not counted.
MAX_MODULE_LINES = 520
MAX_FUNCTION_LINES = 80


def modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """The top-level packages a module imports (at any depth of the file)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("classifier", {"curator", "db"}), ("db", {"curator", "classifier"})],
)
def test_dependencies_point_one_way(package, forbidden):
    wrong = {
        str(p.relative_to(ROOT)): sorted(imported(p) & forbidden)
        for p in (ROOT / package).rglob("*.py")
        if imported(p) & forbidden
    }
    assert wrong == {}


def test_no_module_is_longer_than_about_500_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in modules()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_function_is_longer_than_about_80_lines():
    long = {}
    for path in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
                # From the first statement of the body: a signature of options is not counted.
                first = node.body[0]
                start = first.end_lineno if isinstance(first, ast.Expr) else first.lineno
                length = (node.end_lineno or start) - (start or 0)
                if length > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.name}"] = length
    assert long == {}
