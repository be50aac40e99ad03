"""Pictures decoded once at the size a model reads them, kept on disk as raw pixels.

Every training run, each cross-fit fold and every scoring pass decodes the same originals
again: a 640 x 480 JPEG costs milliseconds of Huffman decoding and resizing for a picture
the model sees at 224 px. `PixelCache` keeps each picture as it comes out of
`classifier.images.load` (fitted, uint8, channels first: 3 * S * S bytes, 150 KB at 224 px)
in a folder per size and fit, so that later reads are one small file (what img2dataset does
at download and FFCV when it writes a data set, done lazily here: a picture is kept the first
time it is read).

An entry records the original's size and modification time and is read only while they
match, and only at the size its folder names: an original changed on disk, or a model
reading another size, decodes again (and rewrites the entry). A missing original fails as it
would without the cache. Entries are written whole under another name and renamed into
place, so workers reading and writing at once, or a crash, never leave a torn one; the cache
stops writing while its disk has less than `MIN_FREE` left (it is a cache: reads then
decode). Pure NumPy and Pillow, like classifier/images.py.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
from pathlib import Path

import numpy as np

from classifier import images

MAGIC = b"CPX1"
_HEAD = struct.Struct("<4sQqI")  # magic, original's bytes, its mtime (ns), picture size
#: The cache writes nothing while its disk has less free space than this fraction, or 2 GiB.
MIN_FREE = 0.10
MIN_FREE_BYTES = 2 * 2**30


class PixelCache:
    """Fitted pictures at one ``size`` and ``fit`` under ``root`` (one folder per both)."""

    def __init__(self, root: str | Path, *, size: int, fit: str, draft: bool = True) -> None:
        self.size, self.fit, self.draft = size, fit, draft
        self.folder = Path(root) / f"{size}-{fit}{'' if draft else '-full'}"
        self._writable: bool | None = None

    def entry(self, path: str) -> Path:
        key = hashlib.blake2b(os.path.abspath(path).encode(), digest_size=16).hexdigest()
        return self.folder / key[:2] / f"{key}.u8"

    def load(self, path: str) -> np.ndarray:
        """The picture at ``path`` as (3, S, S) uint8: from its entry when the entry is the
        original's as it is now, else decoded (and kept)."""
        stat = os.stat(path)  # a missing original fails here, as it would uncached
        entry = self.entry(path)
        pixels = self._read(entry, stat)
        if pixels is not None:
            return pixels
        picture = images.load(path, self.size, self.fit, draft=self.draft)
        pixels = np.ascontiguousarray(np.asarray(picture, dtype=np.uint8).transpose(2, 0, 1))
        self._write(entry, stat, pixels)
        return pixels

    def _read(self, entry: Path, stat: os.stat_result) -> np.ndarray | None:
        want = 3 * self.size * self.size
        try:
            with entry.open("rb") as f:
                head = f.read(_HEAD.size)
                if len(head) != _HEAD.size:
                    return None
                magic, size, mtime, side = _HEAD.unpack(head)
                if (magic, size, mtime, side) != (MAGIC, stat.st_size, stat.st_mtime_ns, self.size):
                    return None
                data = f.read(want + 1)
        except OSError:
            return None
        if len(data) != want:
            return None
        return np.frombuffer(data, dtype=np.uint8).reshape(3, self.size, self.size)

    def _write(self, entry: Path, stat: os.stat_result, pixels: np.ndarray) -> None:
        if not self._room():
            return
        tmp = entry.with_name(f".tmp-{os.getpid()}-{entry.name}")
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("wb") as f:
                f.write(_HEAD.pack(MAGIC, stat.st_size, stat.st_mtime_ns, self.size))
                f.write(pixels.tobytes())
            os.replace(tmp, entry)
        except OSError:  # a full or read-only disk: the picture was decoded all the same
            self._writable = False
            tmp.unlink(missing_ok=True)

    def _room(self) -> bool:
        if self._writable is None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                usage = shutil.disk_usage(self.folder)
                self._writable = usage.free > max(MIN_FREE * usage.total, MIN_FREE_BYTES)
            except OSError:
                self._writable = False
        return self._writable

    def prune(self, keep: set[str]) -> int:
        """Remove the entries of every original but those in ``keep``; returns how many."""
        wanted = {self.entry(path) for path in keep}
        gone = 0
        for entry in self.folder.glob("*/*.u8") if self.folder.is_dir() else ():
            if entry not in wanted:
                entry.unlink(missing_ok=True)
                gone += 1
        return gone
