"""What every export format says of an image: one record per picture, read once.

The pictures are those `curator.export.export_imagefolder` writes: each near-duplicate group's
active representative, with the group's label when it is one of the catalog's classes and
people do not disagree on it. Label Studio's tasks take the unlabeled ones too (they are what
people label there). Each record carries the image's hashes, where it came from (URL or path,
engine, query), where its label came from, and the default model's prediction when it scored
the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from curator.export import _check_folder_names
from db.grouplabels import conflicted_groups
from db.images import active_images, image_provenance, to_unsigned64
from db.labels import group_labels
from db.predictions import latest_predictions
from db.registry import default_model
from db.settings import get_classes

#: Quality findings (blur, low contrast, ...) belong in each record's ``quality_issues``; the
#: catalog records none yet, so every export writes an empty list there, never a guess.
NO_QUALITY_ISSUES: tuple[str, ...] = ()


@dataclass(frozen=True)
class Record:
    id: int
    sha256: str
    #: The stored original, and its file name extension (``.jpg``, ``.png``...).
    path: Path
    ext: str
    bytes: int
    width: int
    height: int
    #: The catalog's split: train, val or test.
    split: str
    label: str | None
    label_origin: str | None
    #: The label's position in the catalog's classes, as training and the models number them.
    index: int | None
    phash: str
    sources: list[dict[str, str | None]] = field(default_factory=list)
    prediction: dict[str, Any] | None = None

    def metadata(self) -> dict[str, Any]:
        """The record as JSON: what every format writes beside the picture."""
        return {
            "id": self.id,
            "sha256": self.sha256,
            "label": self.label,
            "label_index": self.index,
            "label_origin": self.label_origin,
            "split": self.split,
            "width": self.width,
            "height": self.height,
            "phash": self.phash,
            "sources": self.sources,
            "prediction": self.prediction,
            "quality_issues": list(NO_QUALITY_ISSUES),
        }


@dataclass
class Selection:
    classes: list[str]
    records: list[Record]
    #: The default model whose predictions the records carry (None: no model).
    model: int | None
    missing_files: int = 0
    conflicts: int = 0


def _sources(session: Session) -> dict[int, list[dict[str, str | None]]]:
    found: dict[int, list[dict[str, str | None]]] = {}
    for image_id, locator, engine, query in image_provenance(session):
        found.setdefault(image_id, []).append({"url": locator, "engine": engine, "query": query})
    return found


def _predictions(session: Session, model_id: int | None) -> dict[int, dict[str, Any]]:
    if model_id is None:
        return {}
    scored = latest_predictions(session, model_id=model_id)
    return {
        image_id: {"model": p.model_id, "label": p.predicted, "confidence": round(p.confidence, 6)}
        for image_id, p in scored.items()
    }


def select_records(session: Session, *, home: Path, unlabeled: bool = False) -> Selection:
    """The pictures an export writes, in sha256 order (a mix of classes and sources, which
    shards read in order need), with what is known of each; ``unlabeled`` keeps active
    images without a usable label, with ``label`` None."""
    classes = get_classes(session)
    _check_folder_names(classes)
    index = {name: i for i, name in enumerate(classes)}
    labels = group_labels(session)
    disputed = conflicted_groups(session)
    model = getattr(default_model(session), "id", None)
    predictions = _predictions(session, model)
    sources = _sources(session)
    chosen = Selection(classes=classes, records=[], model=model, conflicts=len(disputed))
    for image in active_images(session):
        current = labels.get(image.id)
        usable = current is not None and current.label in index and image.id not in disputed
        if not usable and not unlabeled:
            continue
        path = home / image.path
        if not path.is_file():
            chosen.missing_files += 1
            continue
        label = current.label if usable and current else None
        chosen.records.append(
            Record(
                id=image.id,
                sha256=image.sha256,
                path=path,
                ext=Path(image.path).suffix.lower(),
                bytes=image.bytes,
                width=image.width,
                height=image.height,
                split=image.split,
                label=label,
                label_origin=current.origin if usable and current else None,
                index=index[label] if label is not None else None,
                phash=f"{to_unsigned64(image.phash):016x}",
                sources=sources.get(image.id, []),
                prediction=predictions.get(image.id),
            )
        )
    chosen.records.sort(key=lambda r: r.sha256)
    return chosen


def shard_plan(records: list[Record], limit_bytes: int) -> list[list[Record]]:
    """Records cut, in order, into shards of about ``limit_bytes`` of pictures each (a picture
    larger than that is a shard of its own)."""
    shards: list[list[Record]] = []
    size = 0
    for record in records:
        if not shards or (size + record.bytes > limit_bytes and shards[-1]):
            shards.append([])
            size = 0
        shards[-1].append(record)
        size += record.bytes
    return shards
