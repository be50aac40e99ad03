"""Near-duplicate groups in the catalog: finding them, marking them, undoing that.

A group is a connected set of images whose perceptual hashes lie within the threshold, a
mirrored copy included (its mirror hash matches). Each group keeps one representative, the
image with the most pixels (then the oldest); the others are marked ``duplicate`` with
``duplicate_of`` pointing at it. Every member takes the split of the group's oldest image, so a
picture and its near copies never sit on both sides of a train/test boundary.

Nothing is deleted: marking is a change of status recorded in ``image_changes``, and
``curator dedup --undo`` puts back what a run changed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from curator import defaults
from curator.ingest.crops import (
    CropProgress,
    Squares,
    crop_edges,
    crops_wanted,
    thumbnail_squares,
    wanted_windows,
)
from curator.ingest.hashindex import NearIndex, as_u64, near_pairs
from curator.ingest.imaging import HASH_VERSION
from curator.ingest.windows import WINDOWS_VERSION
from curator.runs import tracked_run
from db.catalog import Catalog
from db.errors import UnknownImage
from db.groups import (
    group_hash_rows,
    member_ids,
    misplaced_duplicates,
    record_separations,
    representatives_of,
    root_of,
    separated_pairs,
)
from db.images import (
    ACTIVE,
    DUPLICATE,
    HashRow,
    change_image,
    hash_rows,
    image_by_id,
    images_by_id,
    undo_changes,
)
from db.windows import window_rows

#: Default Hamming distance (of 64 bits) under which two images are near duplicates.
#: Measured by bench/hash_threshold.py on real photos: re-encodes, resizes, 5 % crops,
#: brightness changes and mirrors of a photo stay within it, distinct photos stay above it.
DEFAULT_THRESHOLD = defaults.DEFAULT_THRESHOLD


@dataclass(frozen=True)
class Target:
    """The state dedup wants an image in."""

    status: str
    duplicate_of: int | None
    split: str


@dataclass
class DedupPlan:
    threshold: int
    images: int = 0
    groups: list[list[int]] = field(default_factory=list)
    #: Whether crops were matched, and whether they were left out for the catalog's size.
    crops: bool = False
    crops_left_out: bool = False
    changes: dict[int, Target] = field(default_factory=dict)
    #: The state each changed image was in when the plan was made.
    before: dict[int, Target] = field(default_factory=dict)

    def summary(self) -> dict[str, int]:
        marks = Counter(t.status for t in self.changes.values())
        return {
            "images": self.images,
            "groups": len(self.groups),
            "in_groups": sum(len(g) for g in self.groups),
            "changed": len(self.changes),
            "to_duplicate": marks[DUPLICATE],
            "to_active": marks[ACTIVE],
        }


def group_targets(members: list[HashRow]) -> dict[int, Target]:
    """Target state of each member of one group: one representative, the rest duplicates."""
    representative = max(members, key=lambda r: (r.pixels, -r.id))
    split = min(members, key=lambda r: r.id).split
    return {
        r.id: Target(
            status=ACTIVE if r.id == representative.id else DUPLICATE,
            duplicate_of=None if r.id == representative.id else representative.id,
            split=split,
        )
        for r in members
    }


def group_changes(members: list[HashRow]) -> dict[int, Target]:
    """The targets of a group's members that differ from their present state."""
    targets = group_targets(members)
    return {
        row.id: targets[row.id]
        for row in members
        if (row.status, row.duplicate_of, row.split)
        != (targets[row.id].status, targets[row.id].duplicate_of, targets[row.id].split)
    }


def component_labels(
    rows: list[HashRow],
    threshold: int,
    workers: int | None = None,
    separated: set[tuple[int, int]] | None = None,
    windows: list[tuple[int, bytes]] | None = None,
    squares: Squares | None = None,
    on_progress: CropProgress | None = None,
    kept: bool = False,
) -> np.ndarray:
    """Connected-component label of each row: rows joined by plain or mirrored hash matches,
    and with ``windows`` (image id, window hashes) by crop matches too
    (`curator.ingest.crops`), and with ``kept`` by the groups they are in already, except
    pairs a person separated (``separated`` holds (smaller id, larger id))."""
    n = len(rows)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    a, b = row_edges(rows, threshold, workers, windows, squares, on_progress)
    if kept:
        a, b = _with_groups(rows, a, b)
    keep = np.ones(a.size, dtype=bool)
    if separated:
        ids = np.fromiter((r.id for r in rows), dtype=np.int64, count=n)
        lo, hi = np.minimum(ids[a], ids[b]), np.maximum(ids[a], ids[b])
        keep &= np.array(
            [(x, y) not in separated for x, y in zip(lo.tolist(), hi.tolist(), strict=True)],
            dtype=bool,
        )
    return _components(n, a[keep], b[keep])


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(a.size), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _with_groups(rows: list[HashRow], a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
    """The edges, and one from each duplicate to its representative: the groups as they are."""
    where = {row.id: i for i, row in enumerate(rows)}
    pairs = [(i, where[r.duplicate_of]) for i, r in enumerate(rows) if r.duplicate_of in where]
    if not pairs:
        return a, b
    extra = np.array(pairs, dtype=np.int64)
    return np.concatenate([a, extra[:, 0]]), np.concatenate([b, extra[:, 1]])


def row_edges(
    rows: list[HashRow],
    threshold: int,
    workers: int | None = None,
    windows: list[tuple[int, bytes]] | None = None,
    squares: Squares | None = None,
    on_progress: CropProgress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of rows (as two index arrays, a != b) that are near copies: by plain or
    mirrored hash, and with ``windows`` and ``squares`` (their pixels, to verify on) as
    crops of one another (each picture against other whole-frame groups than its own)."""
    n = len(rows)
    plain = as_u64(np.fromiter((r.phash for r in rows), dtype=np.int64, count=n))
    mirror = as_u64(np.fromiter((r.phash_mirror for r in rows), dtype=np.int64, count=n))
    # One join over plain and mirror hashes together: item i + n is image i seen in a mirror.
    edges = near_pairs(np.concatenate([plain, mirror]), threshold, workers=workers)
    a, b = edges[:, 0] % n, edges[:, 1] % n
    keep = (a != b) & ((edges[:, 0] < n) | (edges[:, 1] < n))
    a, b = a[keep], b[keep]
    if windows and squares is not None:
        ids = np.fromiter((r.id for r in rows), dtype=np.int64, count=n)
        whole = _components(n, a, b)
        crops = crop_edges(
            ids,
            plain,
            mirror,
            windows,
            squares,
            groups=whole,
            on_progress=on_progress,
            workers=workers,
        )
        a, b = np.concatenate([a, crops[:, 0]]), np.concatenate([b, crops[:, 1]])
    return a, b


def plan_dedup(
    session: Session,
    *,
    threshold: int,
    workers: int | None = None,
    home: Path | None = None,
    crops: bool | None = None,
    on_progress: CropProgress | None = None,
    windows: list[tuple[int, bytes]] | None = None,
) -> DedupPlan:
    """What the catalog should look like with groups at this threshold, as changes; given
    the ``home`` (the thumbnails, to verify on), cropped copies and copies with a banner
    join their photo's group too: with ``crops`` None, when the catalog is small enough
    for that to be quick (`curator.ingest.crops.crops_wanted`); where it is not, the
    groups already made are kept (crop matches of an earlier run included), and whole-frame
    matches join them. ``windows``: those of `curator.ingest.crops.wanted_windows` (without
    them, those stored)."""
    rows = hash_rows(session, hash_version=HASH_VERSION)
    plan = DedupPlan(threshold=threshold, images=len(rows))
    wanted = crops_wanted(crops, len(rows))
    plan.crops = home is not None and wanted
    plan.crops_left_out = home is not None and crops is None and not wanted
    if not plan.crops:
        windows = None
    elif windows is None:  # none made for this plan: those stored
        windows = window_rows(session, version=WINDOWS_VERSION)
    squares = thumbnail_squares(session, home) if plan.crops and home is not None else None
    labels = component_labels(
        rows,
        threshold,
        workers,
        separated_pairs(session),
        windows,
        squares,
        on_progress,
        kept=plan.crops_left_out,
    )
    members: dict[int, list[HashRow]] = {}
    for row, label in zip(rows, labels.tolist(), strict=True):
        members.setdefault(label, []).append(row)
    for group in members.values():
        if len(group) == 1:
            row = group[0]
            if row.status == DUPLICATE:  # no longer close to anything at this threshold
                plan.changes[row.id] = Target(ACTIVE, None, row.split)
            continue
        plan.groups.append(sorted(r.id for r in group))
        plan.changes.update(group_changes(group))
    plan.groups.sort(key=lambda g: (-len(g), g[0]))
    state = {row.id: Target(row.status, row.duplicate_of, row.split) for row in rows}
    plan.before = {image_id: state[image_id] for image_id in plan.changes}
    return plan


def apply_plan(
    session: Session, *, plan: DedupPlan, image_ids: list[int], run_id: int
) -> tuple[int, int]:
    """Apply a plan's changes to these images, skipping any that another process changed
    since the plan was made. Returns (changed, skipped)."""
    current = {
        image.id: Target(image.status, image.duplicate_of, image.split)
        for image in images_by_id(session, image_ids=image_ids).values()
    }
    fresh = {i: plan.changes[i] for i in image_ids if current.get(i) == plan.before.get(i)}
    return apply_targets(session, targets=fresh, run_id=run_id), len(image_ids) - len(fresh)


def apply_targets(session: Session, *, targets: dict[int, Target], run_id: int) -> int:
    """Bring images to their target states, recording each change; return how many changed."""
    changed = 0
    for image_id in sorted(targets):
        image = image_by_id(session, image_id=image_id)
        if image is None:
            continue
        target = targets[image_id]
        if change_image(
            session,
            image=image,
            run_id=run_id,
            status=target.status,
            duplicate_of=target.duplicate_of,
            split=target.split,
        ):
            changed += 1
    return changed


def merge_group(session: Session, *, image_ids: list[int], run_id: int) -> int:
    """Make these images, and the groups they already belong to, one group.

    Used as images arrive: a new image close to stored ones joins (or bridges) their groups.
    Returns the number of images whose state changed.
    """
    found = representatives_of(session, image_ids=image_ids)
    # Groups a person separated stay apart: join the first group and those not kept from it.
    ordered = [found[i] for i in image_ids if i in found]
    separated = separated_pairs(session, image_ids=list(found.values()))
    roots = {ordered[0]} if ordered else set()
    for root in ordered[1:]:
        if all((min(root, r), max(root, r)) not in separated for r in roots):
            roots.add(root)
    image_ids = [i for i in image_ids if i in found and found[i] in roots]
    members = group_hash_rows(session, representatives=roots, image_ids=image_ids)
    return apply_targets(session, targets=group_changes(members), run_id=run_id)


def separate_group(session: Session, *, image_id: int, author: str, run_id: int) -> list[int]:
    """A person's verdict that the group of this image holds no near duplicates: every
    member becomes an image of its own again, and no dedup will group them back.
    Returns the members."""
    if image_by_id(session, image_id=image_id) is None:
        raise UnknownImage(str(image_id))
    root = root_of(session, image_id=image_id)
    members = [root, *member_ids(session, image_id=root)]
    pairs = [(a, b) for i, a in enumerate(members) for b in members[i + 1 :]]
    record_separations(session, pairs=pairs, author=author)
    for member in members[1:]:
        image = image_by_id(session, image_id=member)
        if image is not None:
            change_image(session, image=image, run_id=run_id, status=ACTIVE, duplicate_of=None)
    session.flush()
    return members


def split_off(session: Session, *, image_id: int, author: str, run_id: int) -> list[int]:
    """A person's verdict that this one image is not a near copy of the rest of its group:
    it stands alone again, the others stay together (under a new representative when it was
    theirs), and no dedup puts it back. Returns the images that changed group."""
    image = image_by_id(session, image_id=image_id)
    if image is None:
        raise UnknownImage(str(image_id))
    root = root_of(session, image_id=image_id)
    group = [root, *member_ids(session, image_id=root)]
    others = [i for i in group if i != image_id]
    if not others:
        return []
    record_separations(session, pairs=[(image_id, other) for other in others], author=author)
    if image_id != root:
        change_image(session, image=image, run_id=run_id, status=ACTIVE, duplicate_of=None)
        session.flush()
        return [image_id]
    # The representative leaves: the largest (then oldest) of the rest takes its place.
    rows = images_by_id(session, image_ids=others)
    heir = max(rows.values(), key=lambda r: (r.width * r.height, -r.id))
    change_image(session, image=heir, run_id=run_id, status=ACTIVE, duplicate_of=None)
    for other in others:
        if other != heir.id:
            change_image(session, image=rows[other], run_id=run_id, duplicate_of=heir.id)
    session.flush()
    return [image_id, *others]


#: Images changed per write transaction: short, so that imports and reviews go on meanwhile.
APPLY_BATCH = 1000


def run_dedup(
    catalog: Catalog,
    home: Path,
    *,
    threshold: int = DEFAULT_THRESHOLD,
    dry_run: bool = False,
    crops: bool | None = None,
    on_progress: CropProgress | None = None,
) -> tuple[DedupPlan, dict[str, Any]]:
    """Group the whole catalog's near duplicates and mark them (``curator dedup``): the plan
    is made from one read, then applied in short transactions as a tracked run; an image
    that changed meanwhile is left as it is. With ``crops`` (None: up to
    `curator.ingest.crops.CROPS_AUTO_LIMIT` pictures), copies cut from a picture join its
    group too (`curator.ingest.crops`, reading the thumbnails of ``home``). Returns the
    plan and its summary (with the run's id, and what changed meanwhile, when something was
    applied)."""
    windows = wanted_windows(catalog, home, crops, on_progress)
    with catalog.reading() as session:
        plan = plan_dedup(
            session,
            threshold=threshold,
            home=home,
            crops=crops,
            on_progress=on_progress,
            windows=windows,
        )
    summary: dict[str, Any] = {
        "threshold": threshold,
        "crops": plan.crops,
        "crops_left_out": plan.crops_left_out,
        **plan.summary(),
        "dry_run": dry_run,
    }
    if dry_run or not plan.changes:
        return plan, summary
    params = {"threshold": threshold, "crops": plan.crops}
    with tracked_run(catalog, kind="dedup", params=params) as run:
        ids = sorted(plan.changes)
        skipped = 0
        for start in range(0, len(ids), APPLY_BATCH):
            with catalog.writing() as session:
                chunk = ids[start : start + APPLY_BATCH]
                skipped += apply_plan(session, plan=plan, image_ids=chunk, run_id=run.id)[1]
        summary["changed_meanwhile"] = skipped
        run.counts = dict(summary)
        summary["run"] = run.id
    return plan, summary


def near_matches(index: NearIndex, *, phash: int, phash_mirror: int) -> list[int]:
    """Ids of stored images near this hash, directly or as a mirror image."""
    found = {image_id for image_id, _ in index.query(phash)}
    found.update(image_id for image_id, _ in index.query(phash_mirror))
    return sorted(found)


def undo_run(session: Session, *, run_id: int, undo_run_id: int) -> tuple[int, int, int]:
    """Put back what a run changed (see `db.images.undo_changes`), then mend the groups that
    this splits: images that joined a group later keep pointing at its old representative.

    Returns (reverted, conflicts, regrouped).
    """
    reverted, conflicts = undo_changes(session, run_id=run_id, undo_run_id=undo_run_id)
    session.flush()
    return reverted, conflicts, repair_groups(session, run_id=undo_run_id)


def repair_groups(session: Session, *, run_id: int) -> int:
    """Resolve again every group whose members disagree: a duplicate whose representative is
    no longer active, or that sits in another split than it. Returns the images changed."""
    changed = 0
    for image_id in misplaced_duplicates(session):
        root = root_of(session, image_id=image_id)
        changed += merge_group(session, image_ids=[image_id, root], run_id=run_id)
    return changed
