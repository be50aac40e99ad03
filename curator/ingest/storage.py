"""Original images under the catalog's home: content-addressed, written atomically, never
rewritten or deleted.

    images/ab/<sha256>.<ext>        the original bytes, exactly as they arrived
    tmp/.tmp-<pid>-<random>         a file being written

A file appears under its final name only once it is complete (temporary file, then rename),
so a crash leaves at worst a temporary file, which the next writer sweeps away. `Store.sync`
flushes what was written to the disk; the ingestor calls it before committing the rows that
point at those files, so not even a power cut leaves a row without its file.
"""

from __future__ import annotations

import ctypes
import os
import re
from collections.abc import Callable
from pathlib import Path

from curator.config import Layout
from db.runs import process_alive

_TEMP = re.compile(r"^\.tmp-(\d+)-[0-9a-f]+$")


def _load_syncfs() -> Callable[[int], None]:
    """syncfs(2) where the C library has it (Linux): only this file system, not all."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):
        return lambda _fd: os.sync()

    def call(fd: int) -> None:
        if syncfs(fd) != 0:
            os.sync()

    return call


_syncfs = _load_syncfs()


class Store:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.temp_dir = Layout(home).tmp
        self._dirs: set[Path] = set()

    image_relpath = staticmethod(Layout.image_relpath)

    def path(self, relpath: str) -> Path:
        return self.home / relpath

    def put(self, relpath: str, data: bytes, *, durable: bool = True) -> bool:
        """Write ``data`` under ``relpath`` unless exactly these bytes are already there (a
        file left by a crash, but never synced, may hold others); True if written. Stored
        files are read-only: hard links made by an export cannot change them by accident.

        ``durable`` flushes this file to disk before the rename; batch writers leave it off and
        call `sync` once for the batch instead.
        """
        final = self.home / relpath
        try:
            if final.stat().st_size == len(data) and final.read_bytes() == data:
                return False
        except FileNotFoundError:
            pass
        self._ensure_dir(final.parent)
        self._ensure_dir(self.temp_dir)
        temp = self.temp_dir / f".tmp-{os.getpid()}-{os.urandom(6).hex()}"
        try:
            try:
                fh = open(temp, "wb")  # noqa: SIM115 - closed by the with below
            except FileNotFoundError:  # the folder was removed since it was seen: make it again
                self._dirs.clear()
                self._ensure_dir(self.temp_dir)
                self._ensure_dir(final.parent)
                fh = open(temp, "wb")  # noqa: SIM115
            with fh:
                fh.write(data)
                if durable:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.chmod(temp, 0o444)
            os.replace(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return True

    def sync(self) -> None:
        """Flush every file written so far to the disk (one call for a whole batch)."""
        if not self.home.is_dir():
            return
        fd = os.open(self.home, os.O_RDONLY)
        try:
            _syncfs(fd)
        finally:
            os.close(fd)

    def _ensure_dir(self, path: Path) -> None:
        # Creating folders is slow on some file systems: remember those made or seen.
        if path not in self._dirs:
            path.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path)

    def sweep_temporary(self) -> int:
        """Remove temporary files left by writers that no longer run; return how many."""
        removed = 0
        if self.temp_dir.is_dir():
            for entry in os.scandir(self.temp_dir):
                match = _TEMP.match(entry.name)
                if match and not process_alive(int(match.group(1))):
                    Path(entry.path).unlink(missing_ok=True)
                    removed += 1
        return removed
