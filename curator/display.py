"""Text from outside curator made safe to print on a terminal.

File names, URLs, search queries, labels and authors come from file systems, crawled pages
and people. Printed as they are, an ESC or C1 sequence in one recolours the terminal or sets
its title, a newline forges a line of output, and a bidi override shows a name reversed.
Wherever the CLI prints such a value it goes through `escape_controls`, which shows those
characters as escapes and leaves every other character (any script) as it is.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

#: Characters that reorder the text around them (Unicode's bidirectional controls).
BIDI_CONTROLS: tuple[int, ...] = (
    0x061C,
    0x200E,
    0x200F,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
)
#: C0 (newline and tab included: a value's newline is not one of the output's), DEL and C1.
CONTROLS: tuple[int, ...] = (*range(0x20), 0x7F, *range(0x80, 0xA0))

_ESCAPES: dict[int, str] = {
    **{c: f"\\x{c:02x}" for c in CONTROLS},
    **{c: f"\\u{c:04x}" for c in BIDI_CONTROLS},
}


def escape_controls(value: object) -> str:
    """``value`` as text, control characters shown as ``\\x1b`` and bidi controls as
    ``\\u202e``; letters of every script, and everything else, unchanged."""
    return str(value).translate(_ESCAPES)


def escape_controls_in(data: Any) -> Any:
    """`escape_controls` on every string of nested dicts (keys too), lists and tuples; other
    values (numbers, None) as they are. For a whole result about to be printed as text."""
    if isinstance(data, str | PurePath):
        return escape_controls(data)
    if isinstance(data, dict):
        return {escape_controls_in(k): escape_controls_in(v) for k, v in data.items()}
    if isinstance(data, list):
        return [escape_controls_in(v) for v in data]
    if isinstance(data, tuple):
        return tuple(escape_controls_in(v) for v in data)
    return data
