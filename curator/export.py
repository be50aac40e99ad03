"""``curator export``: the catalog as an ImageFolder tree or a CSV file.

ImageFolder: ``OUT/<split>/<label>/<sha256>.<ext>``, loadable by torchvision's ImageFolder, one
file per active (not duplicate) image with a class label, and ``OUT/classes.json``. Files are
hard links to the stored originals where the file system allows, copies elsewhere. A manifest
lets a later export into the same folder remove what no longer belongs (an image relabeled, or
now a duplicate); a folder that holds anything else is refused rather than touched.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from curator.errors import ExportError
from db.images import ACTIVE, SPLITS, to_unsigned64
from db.labels import current_labels, group_labels
from db.models import Image, Source
from db.settings import get_classes

MANIFEST = ".curator-export.json"
CSV_COLUMNS = [
    "id",
    "sha256",
    "path",
    "status",
    "duplicate_of",
    "split",
    "label",
    "label_origin",
    "width",
    "height",
    "format",
    "bytes",
    "phash",
    "phash_mirror",
    "hash_version",
    "sources",
]


def _place(src: Path, dst: Path, link: bool) -> None:
    if dst.exists():
        if dst.stat().st_size == src.stat().st_size:
            return
        dst.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    temp = dst.with_name(f".{dst.name}.part")
    shutil.copyfile(src, temp)
    os.replace(temp, dst)


def _previous_manifest(out: Path) -> set[str]:
    if not out.exists():
        return set()
    if not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    manifest = out / MANIFEST
    if manifest.is_file():
        try:
            return set(json.loads(manifest.read_text())["files"])
        except (ValueError, KeyError) as exc:
            raise ExportError(f"{manifest} is damaged; export into an empty folder") from exc
    if any(out.iterdir()):
        raise ExportError(
            f"{out} is not empty and is not an earlier curator export; choose an empty folder"
        )
    return set()


def _write_manifest(out: Path, files: set[str], classes: list[str]) -> None:
    manifest = out / MANIFEST
    temp = manifest.with_name(MANIFEST + ".part")
    temp.write_text(json.dumps({"classes": classes, "files": sorted(files)}))
    os.replace(temp, manifest)


def export_imagefolder(
    session: Session,
    *,
    home: Path,
    out: Path,
    link: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write the ImageFolder tree; return counts by split and class.

    Each group's representative is written under the group's label (see
    `db.labels.group_labels`). Every split gets a folder for every class, so torchvision
    numbers the classes alike in all three (load a split that lacks a class with
    ``ImageFolder(path, allow_empty=True)``); ``classes.json`` records the order. The manifest
    is written first, listing what this export will hold, so an interrupted export is
    finished by running it again.
    """
    previous = _previous_manifest(out)
    class_list = get_classes(session)
    classes = set(class_list)
    labels = group_labels(session)
    images = session.scalars(select(Image).where(Image.status == ACTIVE).order_by(Image.id))
    chosen = []
    for image in images:
        current = labels.get(image.id)
        if current is not None and current.label in classes:
            rel = f"{image.split}/{current.label}/{image.sha256}{Path(image.path).suffix}"
            chosen.append((image, current.label, rel))
    files = {rel for _image, _label, rel in chosen}
    out.mkdir(parents=True, exist_ok=True)
    _write_manifest(out, previous | files, class_list)
    for split in SPLITS:
        for name in class_list:
            (out / split / name).mkdir(parents=True, exist_ok=True)
    (out / "classes.json").write_text(
        json.dumps(
            {
                "classes": class_list,
                "class_to_idx": {c: i for i, c in enumerate(sorted(class_list))},
            }
        )
    )
    counts: Counter[str] = Counter()
    for done, (image, label, rel) in enumerate(chosen, 1):
        src = home / image.path
        if not src.is_file():
            counts["missing_files"] += 1
            files.discard(rel)
            continue
        _place(src, out / rel, link)
        counts[f"{image.split}/{label}"] += 1
        if on_progress:
            on_progress(done, len(chosen))
    stale = previous - files
    for rel in sorted(stale):
        (out / rel).unlink(missing_ok=True)
    _remove_other_folders(out, class_list)
    _write_manifest(out, files, class_list)
    return {"files": len(files), "removed": len(stale), **dict(sorted(counts.items()))}


def _remove_other_folders(out: Path, classes: list[str]) -> None:
    """Empty class folders of classes the catalog no longer has (they would be numbered)."""
    for split in SPLITS:
        base = out / split
        if not base.is_dir():
            continue
        for folder in base.iterdir():
            if folder.is_dir() and folder.name not in classes and not any(folder.iterdir()):
                folder.rmdir()


def export_csv(session: Session, *, home: Path, out: Path) -> dict[str, Any]:
    """One row per image (duplicates included, with their status) to a CSV file."""
    if out.is_dir():
        raise ExportError(f"{out} is a folder; give a file name ending in .csv")
    labels = current_labels(session)
    sources: dict[int, list[str]] = {}
    for image_id, locator in session.execute(
        select(Source.image_id, Source.locator)
        .where(Source.image_id.is_not(None))
        .order_by(Source.id)
    ):
        sources.setdefault(image_id, []).append(locator)
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f".{out.name}.part")
    rows = 0
    with open(temp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for image in session.scalars(select(Image).order_by(Image.id)):
            current = labels.get(image.id)
            writer.writerow(
                [
                    image.id,
                    image.sha256,
                    str(home / image.path),
                    image.status,
                    image.duplicate_of if image.duplicate_of is not None else "",
                    image.split,
                    current.label if current else "",
                    current.origin if current else "",
                    image.width,
                    image.height,
                    image.format,
                    image.bytes,
                    f"{to_unsigned64(image.phash):016x}",
                    f"{to_unsigned64(image.phash_mirror):016x}",
                    image.hash_version,
                    json.dumps(sources.get(image.id, [])),
                ]
            )
            rows += 1
    os.replace(temp, out)
    return {"rows": rows}
