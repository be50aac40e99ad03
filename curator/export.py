"""``curator export``: the catalog as an ImageFolder tree or a CSV file.

ImageFolder: ``OUT/<split>/<label>/<sha256>.<ext>``, loadable by torchvision's ImageFolder, one
file per active (not duplicate) image with a class label, and ``OUT/classes.json``. Files are
hard links to the stored originals where the file system allows, copies elsewhere. A manifest
lets a later export into the same folder remove what no longer belongs (an image relabeled, or
now a duplicate); a folder that holds anything else is refused rather than touched.

OUT may be a folder someone else prepared, so nothing in it is taken on trust: a manifest that
lists anything but ``<split>/<class>/<sha256>.<ext>`` is refused, and so is a split or class
folder that is a symbolic link. Every file is written beside its name and renamed over it,
which replaces a link planted at that name instead of writing through it.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import stat
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeGuard, TypeVar

from sqlalchemy.orm import Session

from curator.errors import DamagedManifest, ExportError, LinkedFolder
from db.errors import BadClassName
from db.grouplabels import conflicted_groups
from db.images import SPLITS, active_images, all_images, image_locators, to_unsigned64
from db.labels import current_labels, group_labels
from db.settings import check_class_name, get_classes

T = TypeVar("T")

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
    "own_label",
    "own_label_origin",
]


#: A file an export writes, relative to OUT; the split and the class are checked apart.
_ENTRY = re.compile(r"(?P<split>[^/]+)/(?P<label>[^/]+)/[0-9a-f]{64}\.[a-z0-9]{1,8}")


def _write_replacing(path: Path, write: Callable[[IO[Any]], T], *, binary: bool = False) -> T:
    """Write a new file beside ``path`` and rename it over ``path``; return what ``write``
    returned. mkstemp makes the temporary with O_EXCL under a name no one could plant, and the
    rename replaces whatever stands at ``path`` (a symbolic link included) without following it.
    """
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # as open() would make it, not mkstemp's 0600
        fh = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="")
        with fh:
            result = write(fh)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    return result


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _place(src: Path, dst: Path, link: bool) -> None:
    """Make ``dst`` the image at ``src``: a hard link, or a copy. A regular file of the same
    size is taken to be it already; anything else at ``dst`` (a link, a device) is replaced."""
    try:
        found = os.lstat(dst)
    except FileNotFoundError:
        found = None
    if found is not None:
        if stat.S_ISREG(found.st_mode) and found.st_size == src.stat().st_size:
            return
        if stat.S_ISDIR(found.st_mode):
            raise ExportError(f"{dst} is a folder where the export puts an image")
        dst.unlink()
    if link:
        try:
            os.link(src, dst)  # never follows dst: it fails if anything is there
            return
        except OSError:
            pass
    with open(src, "rb") as original:
        _write_replacing(dst, lambda fh: shutil.copyfileobj(original, fh), binary=True)


def _is_export_file(entry: object) -> TypeGuard[str]:
    """Whether a manifest entry names a file an export writes: ``<split>/<class>/<sha>.<ext>``
    with a split of the catalog and a class name that could be one (not ``..``, no ``/``)."""
    match = _ENTRY.fullmatch(entry) if isinstance(entry, str) else None
    if match is None or match["split"] not in SPLITS:
        return False
    try:
        check_class_name(match["label"])
    except BadClassName:
        return False
    return True


def _refuse_linked_folders(out: Path) -> None:
    """Refuse an OUT whose split folders, or anything directly in them, are symbolic links."""
    for split in SPLITS:
        folder = out / split
        if folder.is_symlink():
            raise LinkedFolder(str(folder))
        if not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_symlink():
                    raise LinkedFolder(entry.path)


def _read_manifest(out: Path) -> set[str]:
    manifest = out / MANIFEST
    if manifest.is_symlink():
        raise DamagedManifest(str(manifest), "it is a symbolic link")
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DamagedManifest(str(manifest), "it is not the JSON an export writes") from exc
    if not isinstance(files, list):
        raise DamagedManifest(str(manifest), "its files are not a list")
    root = out.resolve()
    folders: set[Path] = set()
    for entry in files:
        if not _is_export_file(entry):
            raise DamagedManifest(
                str(manifest), f"it lists '{str(entry)[:200]}', which no export writes"
            )
        folders.add(out / entry.rsplit("/", 1)[0])
    # The shape keeps every entry inside OUT as written; resolving its folder checks that no
    # link on the way leads out (the file itself is never followed: replaced or unlinked).
    for folder in folders:
        if not folder.resolve().is_relative_to(root):
            raise DamagedManifest(str(manifest), f"{folder} leads outside {out}")
    return set(files)


def _previous_manifest(out: Path) -> set[str]:
    """What the last export into OUT wrote, after checking OUT can be written safely."""
    if not out.exists():
        return set()
    if not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    _refuse_linked_folders(out)
    if (out / MANIFEST).is_file() or (out / MANIFEST).is_symlink():
        return _read_manifest(out)
    if any(out.iterdir()):
        raise ExportError(
            f"{out} is not empty and is not an earlier curator export; choose an empty folder"
        )
    return set()


def _write_manifest(out: Path, files: set[str], classes: list[str]) -> None:
    text = json.dumps({"classes": classes, "files": sorted(files)})
    _write_replacing(out / MANIFEST, lambda fh: fh.write(text))


def _make_folder(path: Path) -> None:
    with contextlib.suppress(FileExistsError):
        path.mkdir()
    if path.is_symlink():  # checked before the export began: someone is changing OUT
        raise LinkedFolder(str(path))
    if not path.is_dir():
        raise ExportError(f"{path} is in the way of a folder of the export")


def _check_folder_names(classes: list[str]) -> None:
    """Refuse classes that cannot be folders (a catalog from before class names were checked
    could hold a newline or a backslash) before anything is written."""
    for name in classes:
        try:
            check_class_name(name)
        except BadClassName as exc:
            raise ExportError(
                f"{exc}, and an export makes a folder of each class: relabel its images and "
                "give the catalog other classes (curator classes)"
            ) from None


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
    _check_folder_names(class_list)
    classes = set(class_list)
    labels = group_labels(session)
    disputed = conflicted_groups(session)  # people disagree: not training data until settled
    chosen = []
    for image in active_images(session):
        current = labels.get(image.id)
        if current is not None and current.label in classes and image.id not in disputed:
            rel = f"{image.split}/{current.label}/{image.sha256}{Path(image.path).suffix}"
            chosen.append((image, current.label, rel))
    files = {rel for _image, _label, rel in chosen}
    out.mkdir(parents=True, exist_ok=True)
    _write_manifest(out, previous | files, class_list)
    for split in SPLITS:
        _make_folder(out / split)
        for name in class_list:
            _make_folder(out / split / name)
    numbering = json.dumps(
        {"classes": class_list, "class_to_idx": {c: i for i, c in enumerate(sorted(class_list))}}
    )
    _write_replacing(out / "classes.json", lambda fh: fh.write(numbering))
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
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):  # a folder: not ours
            (out / rel).unlink()  # a link is removed, never what it points at
    _remove_other_folders(out, class_list)
    _write_manifest(out, files, class_list)
    result = {"files": len(files), "removed": len(stale), **dict(sorted(counts.items()))}
    return {**result, "conflicts": len(disputed)} if disputed else result


def _remove_other_folders(out: Path, classes: list[str]) -> None:
    """Empty class folders of classes the catalog no longer has (they would be numbered)."""
    for split in SPLITS:
        base = out / split
        if base.is_symlink() or not base.is_dir():
            continue
        with os.scandir(base) as entries:
            others = [
                Path(e.path)
                for e in entries
                if e.is_dir(follow_symlinks=False) and e.name not in classes
            ]
        for folder in others:
            if _is_empty(folder):
                folder.rmdir()


def _is_empty(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return next(entries, None) is None


def export_csv(session: Session, *, home: Path, out: Path) -> dict[str, Any]:
    """One row per image (duplicates included, with their status) to a CSV file."""
    if out.is_dir():
        raise ExportError(f"{out} is a folder; give a file name ending in .csv")
    # Every row says its group's label, as stats, queues and training go by; its own too.
    groups = group_labels(session)
    own = current_labels(session)
    sources: dict[int, list[str]] = {}
    for image_id, locator in image_locators(session):
        sources.setdefault(image_id, []).append(locator)
    out.parent.mkdir(parents=True, exist_ok=True)

    def write_rows(fh: IO[str]) -> int:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        rows = 0
        for image in all_images(session):
            current = groups.get(image.duplicate_of or image.id)
            mine = own.get(image.id)
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
                    mine.label if mine else "",
                    mine.origin if mine else "",
                ]
            )
            rows += 1
        return rows

    return {"rows": _write_replacing(out, write_rows)}
