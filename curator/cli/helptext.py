"""Help texts written as plain text, rendered by typer as Markdown without losing anything.

The commands' docstrings are plain text: prose paragraphs, and an indented block of example
command lines under "Example:". typer renders help as Markdown, which would read
``OUT/<split>/<label>/<sha256>.<ext>`` as HTML tags and drop them, and which dedents a block
that follows a one-line paragraph, so that its command lines ran together into one. Here prose
has Markdown's special characters escaped, and every indented block becomes a fenced one,
shown line for line whatever comes before it.
"""

from __future__ import annotations

import inspect
import re

import typer
from typer.models import ArgumentInfo

#: Characters Markdown may read as markup (emphasis, code, links, HTML, entities, headings).
_SPECIAL = re.compile(r"([\\`*_\[\]<>&#])")
#: The start of a line that Markdown would read as a list item or a quote.
_BLOCK_START = re.compile(r"^(\s*)([-+>]|\d+[.)])(\s)")


def _prose(line: str) -> str:
    escaped = _SPECIAL.sub(r"\\\1", line)
    return _BLOCK_START.sub(lambda m: f"{m[1]}\\{m[2]}{m[3]}", escaped)


def _fence(block: list[str]) -> list[str]:
    while block and not block[-1].strip():
        block.pop()
    return ["```text", *inspect.cleandoc("\n".join(block)).splitlines(), "```"]


def as_markdown(text: str) -> str:
    """Plain help text as Markdown that renders as it reads: prose escaped, each indented
    block (after a blank line) fenced, so that every line of it stays one line."""
    lines = inspect.cleandoc(text).splitlines()
    out: list[str] = []
    block: list[str] = []
    for line in lines:
        starts_block = line.startswith((" ", "\t")) and (not out or not out[-1].strip())
        if block or starts_block:
            if not line.strip() or line.startswith((" ", "\t")):
                block.append(line)
                continue
            out += [*_fence(block), ""]
            block = []
        out.append(_prose(line))
    if block:
        out += _fence(block)
    return "\n".join(out)


def _name_arguments(callback: object) -> None:
    """Arguments shown in capitals in the usage line (``curator show [OPTIONS] REF``), as
    command lines write them; this typer would show ``{ref}``."""
    if not callable(callback):
        return
    for name, parameter in inspect.signature(callback).parameters.items():
        info = parameter.default
        if isinstance(info, ArgumentInfo) and info.metavar is None:
            info.metavar = name.upper()


def render_helps(app: typer.Typer) -> None:
    """Every command's and group's help, the app's own included, made Markdown (see
    `as_markdown`), and its arguments named in capitals; call it once, after every command
    is registered."""
    if isinstance(app.info.help, str):
        app.info.help = as_markdown(app.info.help)
    for command in app.registered_commands:
        text = command.help if isinstance(command.help, str) else inspect.getdoc(command.callback)
        if text:
            command.help = as_markdown(text)
        _name_arguments(command.callback)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            render_helps(group.typer_instance)
