"""The folder an export of the Hugging Face, Parquet, WebDataset or Label Studio format writes.

OUT may be a folder someone else prepared, so nothing in it is taken on trust, as for the
ImageFolder export (`curator.export`): OUT must be empty or hold an earlier export of the same
format (its manifest says which files are its own), unless ``force`` lets the export write
beside files that are not its own, which it then never touches. A manifest entry of any shape
but the format's own is refused, and so is one of the format's folders that is a symbolic link.
Every file is written beside its name and renamed over it; what this export wrote before and
no longer writes is removed, and nothing else.

The manifest maps each file to a digest of what it holds (empty: not known to be complete).
It is written before any file and again after each one, so that a run stopped at any point
is finished by running it again: a file whose digest matches what it should hold is kept, and
every other one is written again. A file of a killed run's leftovers (``.NAME.XXXX.part``) is
removed from the format's folders, if it is the temporary of a name the format writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from curator.errors import DamagedManifest, ExportError, LinkedFolder
from curator.export import MANIFEST, _write_replacing

if TYPE_CHECKING:
    from curator.formats.records import Record

#: What writes one file: into a binary file, or (with ``binary=False``) a text one.
Writer = Callable[[IO[bytes]], object] | Callable[[IO[str]], object]

#: A leftover of a write that did not finish: mkstemp's name beside the file's.
_PARTIAL = re.compile(r"\.(?P<name>[^/]+)\.[A-Za-z0-9_]+\.part")


class OutFolder:
    """OUT, checked; ``files`` (a pattern each relative path must match) and ``folders`` (the
    format's folders, made and checked) say what this format writes."""

    def __init__(
        self,
        out: Path,
        *,
        fmt: str,
        files: re.Pattern[str],
        folders: Iterable[str],
        force: bool,
        make: Iterable[str] | None = None,
    ) -> None:
        self.out, self.fmt, self.pattern, self.force = out, fmt, files, force
        self.folders = list(folders)
        #: The folders this run makes (all by default); every one of ``folders`` is checked.
        self.make = self.folders if make is None else list(make)
        self.previous: dict[str, str] = {}
        self.state: dict[str, str] = {}

    # -- before anything is written -----------------------------------------------------------

    def open(self, planned: dict[str, str]) -> None:
        """Check OUT, make the format's folders and record the plan: file -> digest."""
        self.previous = self._previous()
        for rel in planned:
            if not self.pattern.fullmatch(rel):  # our own names: a bug, not the user's input
                raise ExportError(f"an export of {self.fmt} cannot write {rel!r}")
        self.out.mkdir(parents=True, exist_ok=True)
        for name in self.make:
            self._make_folder(self.out / name)
        # A file keeps its digest only while it still holds what the plan wants there.
        self.state = {
            rel: self.previous[rel] if self.previous.get(rel) == planned.get(rel) else ""
            for rel in {*self.previous, *planned}
        }
        self._save()
        self._remove_partials()

    def _previous(self) -> dict[str, str]:
        out = self.out
        if not out.exists():
            return {}
        if not out.is_dir():
            raise ExportError(f"{out} exists and is not a folder")
        for name in self.folders:
            if (out / name).is_symlink():
                raise LinkedFolder(str(out / name))
        manifest = out / MANIFEST
        if manifest.is_symlink():
            raise DamagedManifest(str(manifest), "it is a symbolic link")
        found = self._read(manifest) if manifest.is_file() else None
        if found is not None and found[0] == self.fmt:
            return found[1]
        if self.force:
            return {}
        if found is not None:
            raise ExportError(
                f"{out} holds an export of another format ({found[0]}); choose an empty "
                "folder, or add --force to write beside it (nothing of it is removed)"
            )
        if any(out.iterdir()):
            raise ExportError(
                f"{out} is not empty and is not an earlier {self.fmt} export; choose an empty "
                "folder, or add --force to write beside what it holds (nothing of it is touched)"
            )
        return {}

    def _read(self, manifest: Path) -> tuple[str, dict[str, str]]:
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            fmt = data.get("format", "imagefolder")
            files = data["files"]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DamagedManifest(str(manifest), "it is not the JSON an export writes") from exc
        if not isinstance(fmt, str):
            raise DamagedManifest(str(manifest), "its format is not a name")
        if fmt != self.fmt:
            return fmt, {}
        if not isinstance(files, dict):
            raise DamagedManifest(str(manifest), "its files are not a mapping")
        for rel, digest in files.items():
            if not self.pattern.fullmatch(rel) or not isinstance(digest, str):
                raise DamagedManifest(
                    str(manifest), f"it lists '{str(rel)[:200]}', which no {fmt} export writes"
                )
        return fmt, dict(files)

    def _make_folder(self, path: Path) -> None:
        with contextlib.suppress(FileExistsError):
            path.mkdir(parents=True)
        if path.is_symlink():
            raise LinkedFolder(str(path))
        if not path.is_dir():
            raise ExportError(f"{path} is in the way of a folder of the export")

    def _remove_partials(self) -> None:
        for name in self.make:
            with os.scandir(self.out / name) as entries:
                for entry in entries:
                    # Only the temporary of a file this format writes: never another's file.
                    found = _PARTIAL.fullmatch(entry.name)
                    ours = found and self.pattern.fullmatch(f"{name}/{found['name']}")
                    if ours and entry.is_file(follow_symlinks=False):
                        os.unlink(entry.path)

    def _save(self) -> None:
        text = json.dumps({"format": self.fmt, "files": dict(sorted(self.state.items()))})
        _write_replacing(self.out / MANIFEST, lambda fh: fh.write(text))

    # -- writing ------------------------------------------------------------------------------

    def is_done(self, rel: str, digest: str) -> bool:
        """Whether ``rel`` already holds what ``digest`` says (an earlier run wrote it)."""
        if not digest or self.state.get(rel) != digest:
            return False
        try:
            return stat.S_ISREG(os.lstat(self.out / rel).st_mode)
        except FileNotFoundError:
            return False

    def write(self, rel: str, digest: str, write: Writer, *, binary: bool = True) -> None:
        """Write ``rel`` beside its name, rename it into place and record it done."""
        _write_replacing(self.out / rel, write, binary=binary)
        self.done(rel, digest)

    def write_shards(
        self,
        shards: dict[str, list[Record]],
        planned: dict[str, str],
        write_shard: Callable[[list[Record]], Writer],
        *,
        total: int,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Write each shard (``rel`` -> its rows) but those already holding what ``planned``
        says, with what ``write_shard(rows)`` writes; ``on_progress(rows done, total)`` after
        each. Returns how many were kept from an earlier run."""
        done = kept = 0
        for rel, rows in shards.items():
            if self.is_done(rel, planned[rel]):
                kept += 1
            else:
                self.write(rel, planned[rel], write_shard(rows))
            done += len(rows)
            if on_progress:
                on_progress(done, total)
        return kept

    def done(self, rel: str, digest: str) -> None:
        self.state[rel] = digest
        self._save()

    def close(self, planned: dict[str, str]) -> int:
        """Remove what an earlier export wrote and this one does not; return how many."""
        stale = sorted(set(self.state) - set(planned))
        for rel in stale:
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                (self.out / rel).unlink()  # a link is removed, never what it points at
        self.state = {rel: self.state.get(rel, "") for rel in planned}
        self._save()
        return len(stale)
