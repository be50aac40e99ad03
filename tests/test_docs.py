"""Documentation that is checked: help texts with examples, the README's quick start, and
that every document named or linked is one the project ships."""

from __future__ import annotations

import inspect
import re
import subprocess
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


# -- the documents the project names -------------------------------------------------------------

#: A document named in a file: an upper-case name (README.md), or one under docs/, with or
#: without the folders before it.
DOC_NAME = re.compile(r"(?:\b[\w.-]+/)*\b[A-Z_]+\.md\b|\bdocs/[\w./-]+\.md\b")
#: A Markdown link or image: [text](target) or [text](target "title").
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def tracked_files() -> list[Path]:
    """The project's files: git's list where there is one, else every file outside the
    folders a checkout makes (virtual environments, caches, benchmark data)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        names = [n for n in out.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", ".bench", ".pytest_cache", ".ruff_cache", "__pycache__"}
        names = [
            str(p.relative_to(ROOT))
            for p in ROOT.rglob("*")
            if p.is_file() and not skip & set(p.relative_to(ROOT).parts)
        ]
    return [ROOT / n for n in names if (ROOT / n).is_file()]


def text_of(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def anchors(markdown: str) -> set[str]:
    """The anchors of a Markdown file's headings, as GitHub makes them."""
    found: set[str] = set()
    for line in without_code(markdown).splitlines():
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            text = re.sub(r"[`*_]", "", heading.group(1)).lower()
            found.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return found


def without_code(markdown: str) -> str:
    """Markdown without its fenced blocks and inline code, where brackets are not links."""
    markdown = re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", markdown)


def test_the_manual_is_docs_and_the_readme_stays_the_front_door() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200, "the README is the front door; the manual is docs/"
    assert (ROOT / "docs" / "README.md").is_file()
    linked = {m.group(1).split("#")[0] for m in LINK.finditer(without_code(readme))}
    assert "docs/README.md" in linked
    for page in sorted((ROOT / "docs").glob("*.md")):
        index = (ROOT / "docs" / "README.md").read_text()
        assert page.name == "README.md" or f"]({page.name})" in index, f"{page.name} unlisted"


def test_every_document_a_file_names_is_one_the_project_ships() -> None:
    files = tracked_files()
    shipped = {p.relative_to(ROOT).as_posix() for p in files}
    names = {Path(s).name for s in shipped}
    missing = []
    for path in files:
        text = text_of(path)
        if text is None:
            continue
        here = path.relative_to(ROOT).as_posix()
        for match in DOC_NAME.finditer(text):
            name = match.group(0)
            resolved = (path.parent / name).resolve()
            found = (
                (ROOT / name).is_file() or resolved.is_file() or ("/" not in name and name in names)
            )
            if not found:
                missing.append(f"{here}: {name}")
    assert not missing, "documents named but not shipped:\n" + "\n".join(missing)


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_of_the_readme_and_the_manual_resolves(page: Path) -> None:
    broken = []
    for match in LINK.finditer(without_code(page.read_text())):
        target = match.group(1)
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    assert not broken, f"{page.name}:\n" + "\n".join(broken)
