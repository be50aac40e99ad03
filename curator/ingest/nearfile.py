"""The near-duplicate index kept in a file beside the catalog, so an importer opens in
milliseconds instead of reading a million hashes and sorting them again (1.1 s at a
million images).

The file (``cache/near-index-r<radius>.bin`` in the home, see `curator.config.Layout`)
holds a `NearIndex`'s arrays as they lie in memory, read back with ``np.memmap``: opening
costs a header's read, and pages come in as queries touch them. Its header records what it
was made from: the catalog's identity (`db.settings.IDENTITY`, which ``db copy`` renews),
the hash version and radius, the highest image id it covers and how many image rows the
catalog had up to that id. Opening checks those against the catalog (a kept count, one
statement) and rebuilds the file when any differs; rows added since are read by id and
added in memory, and the file is written again once they pass `RESAVE_FRACTION` of it.

A file is written whole under another name and renamed into place, so a crash halfway
leaves the old file (or none), never a torn one; a file cut short by other means fails the
size check and is rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from curator.config import Layout
from curator.ingest.hashindex import NearIndex
from curator.ingest.imaging import HASH_VERSION
from db.images import hashed_through, id_phash_pairs, images_through, phashes_after
from db.settings import catalog_identity

log = logging.getLogger(__name__)

MAGIC = b"CURNEAR1"
_ALIGN = 64
#: Rows read after the file's high-water id, as a fraction of its rows, past which an
#: importer writes the file again when it closes.
RESAVE_FRACTION = 0.01
RESAVE_MIN = 2048


@dataclass
class Opened:
    """An index and what it was checked against: whether it came from the file, and the
    rows the file covers (up to ``high_water``)."""

    index: NearIndex
    from_file: bool
    high_water: int
    file_rows: int


def _header(path: Path) -> tuple[dict[str, Any], int] | None:
    try:
        with path.open("rb") as f:
            head = f.read(16)
            if len(head) < 16 or head[:8] != MAGIC:
                return None
            (size,) = struct.unpack("<Q", head[8:])
            meta = json.loads(f.read(size))
        return meta, _aligned(16 + size)
    except (OSError, ValueError):
        return None


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def read_index(path: Path) -> tuple[NearIndex, dict[str, Any]] | None:
    """The index in this file and its header; None for a missing, foreign or short file."""
    found = _header(path)
    if found is None:
        return None
    meta, offset = found
    try:
        expected = offset + sum(a["bytes"] for a in meta["arrays"])
        if path.stat().st_size != expected:
            return None
        arrays = {}
        for spec in meta["arrays"]:
            count = spec["bytes"] // np.dtype(spec["dtype"]).itemsize
            arrays[spec["name"]] = (
                np.memmap(path, dtype=spec["dtype"], mode="r", offset=offset, shape=(count,))
                if count
                else np.empty(0, dtype=spec["dtype"])
            )
            offset += spec["bytes"]
        return NearIndex.from_arrays(arrays, radius=int(meta["radius"])), meta
    except (KeyError, TypeError, ValueError, OSError):
        return None


def write_index(path: Path, index: NearIndex, meta: dict[str, Any]) -> None:
    """Write the index whole beside ``path`` and rename it into place."""
    arrays = index.arrays()
    specs = [{"name": k, "dtype": a.dtype.str, "bytes": int(a.nbytes)} for k, a in arrays.items()]
    header = json.dumps({**meta, "arrays": specs}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        with tmp.open("wb") as f:
            f.write(MAGIC + struct.pack("<Q", len(header)) + header)
            f.write(b"\0" * (_aligned(16 + len(header)) - 16 - len(header)))
            for a in arrays.values():
                f.write(np.ascontiguousarray(a).tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def index_path(home: Path, radius: int) -> Path:
    return Layout(home).near_index(radius)


def _meta(session: Session, identity: str, radius: int, high_water: int) -> dict[str, Any]:
    return {
        "catalog": identity,
        "hash_version": HASH_VERSION,
        "radius": radius,
        "high_water": high_water,
        "rows": images_through(session, image_id=high_water),
    }


def _matches(session: Session, meta: dict[str, Any], identity: str | None, radius: int) -> bool:
    if identity is None or meta.get("catalog") != identity:
        return False
    if meta.get("hash_version") != HASH_VERSION or meta.get("radius") != radius:
        return False
    high_water = meta.get("high_water")
    if not isinstance(high_water, int):
        return False
    return images_through(session, image_id=high_water) == meta.get("rows")


def open_index(session: Session, *, home: Path, radius: int) -> Opened:
    """The catalog's near-duplicate index: from its file when the file matches the catalog,
    else made from the catalog's hashes (and the file written again); rows added since the
    file was written are read and added."""
    path = index_path(home, radius)
    identity = catalog_identity(session)
    found = read_index(path)
    if found is not None and _matches(session, found[1], identity, radius):
        index, meta = found
        high_water, file_rows = int(meta["high_water"]), len(index)
        for image_id, phash in phashes_after(
            session, image_id=high_water, hash_version=HASH_VERSION
        ):
            index.add(image_id, phash)
        return Opened(index, True, high_water, file_rows)
    if found is not None:
        log.info("the near-duplicate index at %s is not this catalog's as it is: rebuilt", path)
    pairs = np.array(id_phash_pairs(session, hash_version=HASH_VERSION), dtype=np.int64)
    pairs = pairs.reshape(-1, 2)
    index = NearIndex(pairs[:, 0].copy(), pairs[:, 1].copy(), radius=radius)
    high_water = int(pairs[:, 0].max()) if pairs.size else 0
    if identity is not None:
        _save(session, path, index, identity, radius, high_water)
    return Opened(index, False, high_water, len(index))


def keep_index(session: Session, *, home: Path, opened: Opened, indexed_up_to: int) -> bool:
    """Write the index again when the rows added since its file pass `RESAVE_FRACTION` of
    it (else the next opening reads them by id, a few milliseconds); returns whether it did."""
    added = len(opened.index) - opened.file_rows
    if added <= max(RESAVE_MIN, RESAVE_FRACTION * opened.file_rows):
        return False
    identity = catalog_identity(session)
    if identity is None:
        return False
    path = index_path(home, opened.index.radius)
    return _save(session, path, opened.index, identity, opened.index.radius, indexed_up_to)


def _save(
    session: Session, path: Path, index: NearIndex, identity: str, radius: int, high_water: int
) -> bool:
    """Write the file, when the index holds exactly the catalog's hashed rows up to
    ``high_water`` (a check that costs a count, paid only when writing)."""
    if hashed_through(session, image_id=high_water, hash_version=HASH_VERSION) != len(index):
        log.info("the near-duplicate index differs from the catalog: not kept in a file")
        return False
    try:
        write_index(path, index, _meta(session, identity, radius, high_water))
    except OSError as exc:  # a cache: without it the next opening rebuilds
        log.warning("could not keep the near-duplicate index at %s: %s", path, exc)
        return False
    return True
