"""Documentation that is checked: help texts with examples, and the README's quick start."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from curator.cli import app

ROOT = Path(__file__).resolve().parent.parent


def command_names() -> list[str]:
    """Every command, those of a group as "group command" (curator db copy)."""
    names = [c.name for c in app.registered_commands]
    for group in app.registered_groups:
        names += [f"{group.name} {c.name}" for c in group.typer_instance.registered_commands]
    return sorted(names)


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
