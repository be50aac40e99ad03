"""Thumbnails: one small SQLite file of JPEG blobs beside the originals.

Thumbnails are derived data, made during import from the same decode that hashes the image.
Keeping them as rows rather than files costs one batched insert instead of one file creation
per image (file creation is the slowest step of an import on many disks) and keeps a catalog
of 100,000 images copyable. A missing thumbnail (an image imported on another machine of a
team, say) is made again from the original on demand.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

from curator.config import Layout
from curator.ingest.imaging import encode_jpeg, make_thumbnail, to_rgb

_SCHEMA = "CREATE TABLE IF NOT EXISTS thumbs (sha256 TEXT PRIMARY KEY, jpeg BLOB NOT NULL)"


class ThumbStore:
    """Thumbnails by sha256 in ``<home>/thumbs.db``; safe to share between threads."""

    def __init__(self, home: Path) -> None:
        self.path = Layout(home).thumbs
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute(_SCHEMA)
            self._local.db = db
            with self._lock:
                self._opened.append(db)
        return db

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        rows = [(sha, blob) for sha, blob in items if blob]
        if rows:
            db = self._db()
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.executemany("INSERT OR IGNORE INTO thumbs VALUES (?, ?)", rows)

    def get(self, sha256: str) -> bytes | None:
        row = self._db().execute("SELECT jpeg FROM thumbs WHERE sha256 = ?", (sha256,)).fetchone()
        return row[0] if row else None

    def get_or_make(self, sha256: str, original: Path) -> bytes:
        """The thumbnail, made again from the original file if it is missing."""
        blob = self.get(sha256)
        if blob is None:
            from PIL import Image, ImageOps

            with Image.open(original) as img:
                img.draft("RGB", (512, 512))
                blob = encode_jpeg(make_thumbnail(to_rgb(ImageOps.exif_transpose(img))))
            self.put_many([(sha256, blob)])
        return blob

    def __contains__(self, sha256: str) -> bool:
        return self.get(sha256) is not None

    def close(self) -> None:
        """Close the connections of every thread that used the store (none may be using it):
        one left to the garbage collector keeps the file's shared memory mapped."""
        self._local = threading.local()
        with self._lock:
            opened, self._opened = self._opened, []
        for db in opened:
            db.close()
