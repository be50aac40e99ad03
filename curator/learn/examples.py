"""From the catalog to examples: which images train a model.

One example per near-duplicate group (its active representative), labeled with the group's
label (`db.labels.group_labels`): human labels only by default, query and import labels too
with ``include_weak``; rejected images and groups whose members people labeled differently
are left out. Each example keeps the catalog's split, assigned per group, so no picture and
no near copy of it is on both sides of a boundary. What a model then does with examples is
`classifier`'s, which knows nothing of the catalog.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from sqlalchemy.orm import Session

from classifier.config import Machine
from classifier.data import HUMAN_ONLY, WITH_WEAK, Example, Examples
from curator.config import Layout
from db.images import SPLITS, active_rows
from db.labels import group_labels
from db.settings import REJECT


def catalog_examples(
    session: Session, *, home: Path, classes: list[str], include_weak: bool = False
) -> Examples:
    """Every labeled, active image of the catalog as an example of its split."""
    origins = WITH_WEAK if include_weak else HUMAN_ONLY
    index = {name: i for i, name in enumerate(classes)}
    labels = group_labels(session)
    splits: dict[str, list[Example]] = {name: [] for name in SPLITS}
    missing: list[int] = []
    conflicts: list[int] = []
    for image_id, relpath, split, disputed in active_rows(session):
        label = labels.get(image_id)
        if label is None or label.origin not in origins or label.label == REJECT:
            continue
        if label.label not in index:
            continue
        if disputed:  # a label people disagree on teaches nothing until they settle it
            conflicts.append(image_id)
            continue
        path = home / relpath
        if not os.path.isfile(path):
            missing.append(image_id)
            continue
        splits[split].append(Example(image_id, str(path), index[label.label]))
    return Examples(
        classes=list(classes), splits=splits, missing_files=missing, conflicts=conflicts
    )


def pixel_cached(machine: Machine, home: Path) -> Machine:
    """The machine, reading pictures through the home's cache of decoded pictures (see
    classifier/pixelcache.py) unless it names a cache of its own."""
    if machine.pixel_cache is not None:
        return machine
    return dataclasses.replace(machine, pixel_cache=str(Layout(home).pixel_cache))
