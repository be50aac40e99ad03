"""Where ``curator score`` writes the rows for files and folders: CSV or JSON Lines, to a file
(written beside it as ``FILE.partial`` and renamed when complete, so an interrupted run never
replaces a complete file, and a rerun continues from the partial) or to standard output."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from curator.display import escape_controls
from curator.errors import CuratorError
from curator.ingest.door import display_path


class RowWriter:
    """CSV or JSON Lines rows, flushed batch by batch, to a file or standard output."""

    def __init__(self, out: IO[str], fmt: str, classes: list[str], with_ids: bool) -> None:
        self.out, self.fmt, self.classes, self.with_ids = out, fmt, classes, with_ids
        # CSV rows on a terminal are read, not parsed: a file name's ESC or newline is shown
        # escaped there; in a file or a pipe it is kept exactly. (JSON escapes them anyway.)
        self.text: Callable[[str], str] = escape_controls if _is_terminal(out) else str
        self.csv = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
        #: Rows written so far (kept ones included).
        self.rows = 0
        if self.csv is not None:
            self.csv.writerow([self.text(name) for name in csv_header(classes, with_ids)])

    def write_kept(self, kept: Kept) -> None:
        """The rows an interrupted run wrote, as it wrote them."""
        for row in kept.rows:
            if self.csv is not None:
                self.csv.writerow(row)
            else:
                self.out.write(f"{row}\n")
        self.rows += len(kept.rows)

    def write(
        self, path: str, probs: np.ndarray | None, error: str | None, image_id: int | None
    ) -> None:
        shown = display_path(path)
        if probs is None:
            values: list[float | None] = [None] * len(self.classes)
            predicted, confidence = "", None
        else:
            best = int(np.argmax(probs))
            predicted, confidence = self.classes[best], round(float(probs[best]), 6)
            values = [round(float(p), 6) for p in probs]
        if self.csv is not None:
            row = [self.text(shown), self.text(predicted), "" if confidence is None else confidence]
            row += ["" if v is None else v for v in values] + [self.text(error or "")]
            self.csv.writerow([*row, image_id or ""] if self.with_ids else row)
        else:
            record: dict[str, Any] = {
                "path": shown,
                "predicted": predicted or None,
                "confidence": confidence,
                "probs": None if probs is None else dict(zip(self.classes, values, strict=True)),
                "error": error,
            }
            if self.with_ids:
                record["image_id"] = image_id
            self.out.write(json.dumps(record) + "\n")
        self.rows += 1

    def flush(self) -> None:
        self.out.flush()


def csv_header(classes: list[str], with_ids: bool) -> list[str]:
    header = ["path", "predicted", "confidence", *[f"p_{c}" for c in classes], "error"]
    return [*header, "image_id"] if with_ids else header


def _is_terminal(out: IO[str]) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):  # not a real stream, or closed
        return False


def output_format(out: Path | None, fmt: str | None) -> str:
    if fmt:
        if fmt not in ("csv", "jsonl"):
            raise CuratorError(f"--format {fmt!r}: csv or jsonl")
        return fmt
    if out is None or out.suffix.lower() == ".csv":
        return "csv"
    if out.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise CuratorError(f"{out}: name it .csv or .jsonl (or say --format csv|jsonl)")


def partial_of(out: Path) -> Path:
    """Where an interrupted run leaves the rows it wrote to ``out``."""
    return out.with_name(f"{out.name}.partial")


def _made_by_of(out: Path) -> Path:
    # What wrote FILE.partial (model, format, columns): a rerun continues only the same run.
    return out.with_name(f".{out.name}.partial.json")


@dataclass
class Kept:
    """The rows of an interrupted run's ``FILE.partial`` that a rerun keeps instead of
    scoring their files again: CSV rows as lists of fields, JSON Lines as lines."""

    rows: list[list[str] | str] = field(default_factory=list)
    paths: set[str] = field(default_factory=set)
    failed: int = 0
    by_class: dict[str, int] = field(default_factory=dict)

    def add(self, row: list[str] | str, path: str, predicted: str | None) -> None:
        self.rows.append(row)
        self.paths.add(path)
        if predicted:
            self.by_class[predicted] = self.by_class.get(predicted, 0) + 1
        else:
            self.failed += 1


def kept_rows(out: Path, made_by: dict[str, Any], wanted: set[str]) -> Kept | None:
    """The rows of ``FILE.partial`` for the paths in ``wanted`` (as written), if the same
    model wrote it in the same format; None when there is nothing to continue."""
    try:
        if json.loads(_made_by_of(out).read_text(encoding="utf-8")) != made_by:
            return None
        text = partial_of(out).read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
    kept = Kept()
    if made_by["format"] == "csv":
        records = list(csv.reader(io.StringIO(text, newline="")))
        if not records or records[0] != csv_header(made_by["classes"], made_by["with_ids"]):
            return None
        complete = records[1:] if text.endswith("\n") else records[1:-1]  # a cut last row
        for row in complete:
            if len(row) == len(records[0]) and row[0] in wanted and row[0] not in kept.paths:
                kept.add(row, row[0], row[1])
        return kept
    for line in text.splitlines():
        try:
            record = json.loads(line)
            path, predicted = record["path"], record["predicted"]
        except (ValueError, TypeError, KeyError):
            continue  # a line cut short
        if path in wanted and path not in kept.paths:
            kept.add(line, path, predicted)
    return kept


@contextmanager
def open_output(out: Path | None, made_by: dict[str, Any] | None = None) -> Iterator[IO[str]]:
    """The output file (written beside, renamed into place at the end; an interrupted run
    leaves its rows in ``FILE.partial``, and what wrote them, ``made_by``, beside it) or
    standard output."""
    if out is None:
        import sys

        yield sys.stdout
        return
    if out.is_dir():
        raise CuratorError(f"{out} is a folder; --out needs a file name")
    if not out.parent.is_dir():
        raise CuratorError(f"no such folder: {out.parent}")
    partial = out.with_name(f".{out.name}.partial")
    try:
        fh = open(partial, "w", encoding="utf-8", newline="")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise CuratorError(f"cannot write {out}: {exc.strerror or exc}") from None
    try:
        with fh:
            yield fh
    except BaseException:
        # Keep what was scored, beside the output (never over an earlier, complete one).
        with contextlib.suppress(OSError):
            _made_by_of(out).write_text(json.dumps(made_by or {}), encoding="utf-8")
            os.replace(partial, partial_of(out))
        raise
    os.replace(partial, out)
    for done in (partial_of(out), _made_by_of(out)):
        with contextlib.suppress(FileNotFoundError):
            done.unlink()
