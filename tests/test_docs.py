"""Documentation that is checked: help texts with examples, and the README's quick start."""

from __future__ import annotations

import inspect
import re
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

import curator
from curator.cli import HELP, app
from curator.cli import db as db_cli

ROOT = Path(__file__).resolve().parent.parent


def command_names() -> list[str]:
    """Every command, those of a group as "group command" (curator db copy)."""
    names = [c.name for c in app.registered_commands]
    for group in app.registered_groups:
        names += [f"{group.name} {c.name}" for c in group.typer_instance.registered_commands]
    return sorted(names)


def written_help(name: str) -> str:
    """The help of a command, a group ("db") or the app itself (""), as written."""
    if name == "":
        return HELP
    if name == "db":
        return db_cli.HELP
    *group, command = name.split()
    typer_app = app
    for part in group:
        typer_app = next(g.typer_instance for g in app.registered_groups if g.name == part)
    info = next(c for c in typer_app.registered_commands if c.name == command)
    return inspect.getdoc(info.callback) or ""


def example_lines(text: str) -> list[str]:
    """The lines of the block under "Example:" that run curator."""
    block = text.split("Example:", 1)[1]
    return [ln.strip() for ln in block.splitlines() if ln.strip().startswith("curator ")]


@pytest.mark.parametrize("name", ["", "db", *command_names()])
def test_help_shows_placeholders_and_prose_literally_and_each_example_on_its_own_line(
    name: str,
) -> None:
    result = CliRunner().invoke(app, [*name.split(), "--help"])
    assert result.exit_code == 0
    rendered = result.stdout
    shown = [ln.strip() for ln in rendered.splitlines()]
    written = written_help(name)
    examples = example_lines(written)
    assert examples, "the help has examples"
    for example in examples:
        assert example in shown, f"{example!r} is not a line of its own in:\n{rendered}"
    # Every paragraph of prose reads as written (wrapped anew, but no word or character lost
    # to Markdown: <split>, _, *, and the like).
    flat = " ".join(rendered.split())
    for paragraph in written.split("Example:", 1)[0].split("\n\n"):
        words = " ".join(paragraph.split())
        if words:
            assert words in flat, f"{words!r} is not shown as written"


def test_the_export_help_names_the_folder_layout_literally() -> None:
    result = CliRunner().invoke(app, ["export", "--help"])
    assert "OUT/<split>/<label>/<sha256>.<ext>" in result.stdout


def test_version_prints_the_version_of_the_package_and_needs_no_catalog(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = CliRunner().invoke(app, ["--home", str(home), "--version"])
    assert result.exit_code == 0
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert result.stdout == f"curator {curator.__version__}\n"
    assert curator.__version__ == project["version"]
    assert not home.exists()


@pytest.mark.parametrize("name", command_names())
def test_every_command_has_help_with_an_example(name: str) -> None:
    result = CliRunner().invoke(app, [*name.split(), "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.stdout
    assert re.search(rf"curator {name}\b", result.stdout), "the example uses the command"


def test_the_readme_quick_start_is_exactly_two_commands_and_ci_runs_the_second() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```(?:sh|bash|console)?\n(.*?)```", section, re.S)
    assert block, "the quick start has a code block"
    lines = [ln.split("#", 1)[0].strip() for ln in block.group(1).splitlines()]
    commands = [ln for ln in lines if ln]
    assert len(commands) == 2
    ci_lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert commands[1] in ci_lines


def test_the_readme_names_every_command() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in command_names():
        assert f"curator {name}" in readme, name
