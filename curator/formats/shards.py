"""WebDataset: tar shards that training reads in order, one folder per split.

``OUT/<split>/<split>-NNNNNN.tar`` (train, val, test), each of about ``shard_mb`` of pictures,
each picture as three members sharing its key, the sha256: ``<sha256>.<ext>`` (the original
bytes, never encoded again, so ``.jpg``, ``.png`` or ``.webp`` as stored), ``<sha256>.cls``
(the class index, in the catalog's order, which ``OUT/classes.json`` lists) and
``<sha256>.json`` (the record of `curator.formats.records`). With ``max_side``, a picture
whose longer side is larger is oriented, brought to that side and written as a JPEG of quality
95 (``.jpg``); smaller ones keep their bytes.

Pictures go into shards in sha256 order, which mixes classes and sources, so that a reader's
shuffle buffer sees both classes from the first shard. Each shard is written beside its name
and renamed over it, and the manifest records each one's digest when it is in place: a run
stopped in the middle leaves whole shards only, and running it again writes just the others.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import IO, Any

from curator.formats.hub import _digest
from curator.formats.outdir import OutFolder
from curator.formats.records import Record, Selection, shard_plan
from db.images import SPLITS

_FILES = re.compile(r"(train|val|test)/(train|val|test)-\d{6}\.tar|classes\.json")
JPEG_QUALITY = 95


def _picture(record: Record, max_side: int | None) -> tuple[str, bytes]:
    """The member's extension and bytes: the original, or a smaller JPEG of it."""
    if max_side is None or max(record.width, record.height) <= max_side:
        return record.ext.lstrip("."), record.path.read_bytes()
    from PIL import Image, ImageOps

    from classifier.images import to_rgb

    with Image.open(record.path) as img:
        img.draft("RGB", (max_side, max_side))  # JPEG: decode at a smaller scale when it can
        picture = to_rgb(ImageOps.exif_transpose(img))
        picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        encoded = io.BytesIO()
        picture.save(encoded, "JPEG", quality=JPEG_QUALITY)
    return "jpg", encoded.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0  # the same bytes on every run
    tar.addfile(info, io.BytesIO(data))


def _write_tar(fh: IO[bytes], rows: list[Record], max_side: int | None) -> None:
    with tarfile.open(fileobj=fh, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for record in rows:
            ext, data = _picture(record, max_side)
            _add(tar, f"{record.sha256}.{ext}", data)
            _add(tar, f"{record.sha256}.cls", str(record.index).encode("ascii"))
            _add(tar, f"{record.sha256}.json", json.dumps(record.metadata()).encode("utf-8"))


def export_webdataset(
    chosen: Selection,
    *,
    out: Path,
    shard_mb: float,
    max_side: int | None = None,
    force: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write the shards; return the counts by split, the shards and those kept from before."""
    shards: dict[str, list[Record]] = {}
    counts: dict[str, int] = {}
    for split in SPLITS:
        rows = [r for r in chosen.records if r.split == split]
        counts[split] = len(rows)
        for i, part in enumerate(shard_plan(rows, int(shard_mb * 1e6))):
            shards[f"{split}/{split}-{i:06d}.tar"] = part
    planned = {
        rel: _digest(json.dumps([max_side, [r.metadata() for r in rows]], sort_keys=True))
        for rel, rows in shards.items()
    }
    classes = json.dumps({"classes": chosen.classes, "default_model": chosen.model})
    planned["classes.json"] = _digest(classes)
    folder = OutFolder(out, fmt="webdataset", files=_FILES, folders=SPLITS, force=force)
    folder.open(planned)
    kept = folder.write_shards(
        shards,
        planned,
        lambda rows: partial(_write_tar, rows=rows, max_side=max_side),
        total=len(chosen.records),
        on_progress=on_progress,
    )
    folder.write(
        "classes.json", planned["classes.json"], lambda fh: fh.write(classes), binary=False
    )
    removed = folder.close(planned)
    return {
        "files": len(chosen.records),
        "shards": len(shards),
        "kept_shards": kept,
        "removed": removed,
        **counts,
    }
