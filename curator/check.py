"""``curator check``: what a crawl brings that hashes and labels do not catch.

* the issue types (`db.properties.ISSUES`: blurry, dark, bright, low-information, grayscale,
  odd-aspect, small), each image flagged at the catalog's thresholds, worst first;
* leaks: pairs of near copies (whole-frame, mirrored or cropped, `curator.ingest.crops`) on
  both sides of a split boundary, which let a test set grade a model on pictures it trained
  on; `fix_splits` regroups them with ``curator dedup``'s own machinery;
* the label balance per split;
* entanglement of labels with sources: a class that comes mostly from one engine or one
  site, or whose pictures are systematically smaller, darker or more often grayscale than the
  others': what a classifier would learn instead of the subject.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from curator.ingest.crops import CropProgress, crops_wanted, thumbnail_squares, wanted_windows
from curator.ingest.dedup import DEFAULT_THRESHOLD, row_edges, run_dedup
from curator.ingest.imaging import HASH_VERSION
from curator.ingest.properties import PROPERTIES_VERSION
from db.catalog import Catalog
from db.groups import separated_pairs
from db.images import DUPLICATE, hash_rows
from db.properties import (
    ISSUES,
    PropertyRow,
    count_missing_properties,
    flagged,
    property_rows,
    thresholds,
)

#: A class drawn this much from one engine or site, when the other classes are not, is
#: entangled with it.
SOURCE_SHARE = 0.7
#: ... and the other classes draw at most this share from it.
OTHERS_SHARE = 0.3
#: Fewest images a class needs before its entanglement is judged.
MIN_CLASS = 10


def leaks(
    catalog: Catalog,
    home: Path,
    *,
    threshold: int = DEFAULT_THRESHOLD,
    crops: bool | None = None,
    on_progress: CropProgress | None = None,
) -> list[list[int]]:
    """Pairs [a, b] (a < b) of near copies, cropped ones included (``crops`` None: up to
    `curator.ingest.crops.CROPS_AUTO_LIMIT` pictures), that sit in different splits;
    pairs a person separated are not copies."""
    windows = wanted_windows(catalog, home, crops, on_progress)
    with catalog.reading() as session:
        rows = hash_rows(session, hash_version=HASH_VERSION)
        if not rows:
            return []
        separated = separated_pairs(session)
        squares = thumbnail_squares(session, home) if windows is not None else None
        a, b = row_edges(rows, threshold, None, windows, squares, on_progress)
    found = set()
    for i, j in zip(a.tolist(), b.tolist(), strict=True):
        x, y = rows[i], rows[j]
        if x.split == y.split:
            continue
        pair = (min(x.id, y.id), max(x.id, y.id))
        if pair not in separated:
            found.add(pair)
    return [list(p) for p in sorted(found)]


def fix_splits(
    catalog: Catalog,
    home: Path,
    *,
    threshold: int = DEFAULT_THRESHOLD,
    crops: bool | None = None,
    on_progress: CropProgress | None = None,
) -> dict[str, Any]:
    """Regroup near copies across splits: ``curator dedup`` (with crops as it matches
    them), which puts every group in one split. Returns the leaks before and after (their
    count, and the pairs left after as ``leaks``), and dedup's summary."""
    before = leaks(catalog, home, threshold=threshold, crops=crops, on_progress=on_progress)
    _plan, summary = run_dedup(
        catalog, home, threshold=threshold, crops=crops, on_progress=on_progress
    )
    after = leaks(catalog, home, threshold=threshold, crops=crops, on_progress=on_progress)
    return {
        "leaks_before": len(before),
        "leaks_after": len(after),
        "dedup": summary,
        "leaks": after,
    }


def _site(row: PropertyRow) -> str | None:
    url = row.page_url or (row.locator if row.locator and "://" in row.locator else None)
    if not url:
        return None
    return urlsplit(url).hostname or None


def balance(rows: list[PropertyRow]) -> dict[str, dict[str, int]]:
    """Active images per split and label (``(none)``: unlabeled)."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        out[row.split][row.label or "(none)"] += 1
    return {split: dict(sorted(c.items())) for split, c in sorted(out.items())}


def _source_findings(
    by_class: dict[str, list[PropertyRow]], what: str, key: Callable[[PropertyRow], str | None]
) -> list[dict[str, Any]]:
    """Classes drawn mostly from one value of ``key`` (an engine, a site) the others are not."""
    findings = []
    values = {c: [key(r) for r in rs] for c, rs in by_class.items()}
    for label, own in values.items():
        known = [v for v in own if v]
        if len(known) < MIN_CLASS:
            continue
        top, n = Counter(known).most_common(1)[0]
        share = n / len(own)
        others = [v for c, vs in values.items() if c != label for v in vs]
        other_share = sum(v == top for v in others) / len(others) if others else 0.0
        if share >= SOURCE_SHARE and other_share <= OTHERS_SHARE:
            findings.append(
                {
                    "class": label,
                    "kind": what,
                    "value": top,
                    "share": round(share, 3),
                    "others_share": round(other_share, 3),
                }
            )
    return findings


def _look_findings(
    by_class: dict[str, list[PropertyRow]], limits: dict[str, float]
) -> list[dict[str, Any]]:
    """Classes whose pictures are smaller, darker or more often grayscale than the rest."""
    looks = {
        "smaller": lambda r: r.short_side,
        "darker": lambda r: r.brightness_p50,
        "grayscale": lambda r: float(r.colourfulness < limits["grayscale"]),
    }
    findings = []
    for label, own in by_class.items():
        rest = [r for c, rs in by_class.items() if c != label for r in rs]
        own_m = [r for r in own if r.short_side is not None]
        rest_m = [r for r in rest if r.short_side is not None]
        if len(own_m) < MIN_CLASS or len(rest_m) < MIN_CLASS:
            continue
        for name, value in looks.items():
            mine = statistics.fmean(value(r) for r in own_m)
            theirs = statistics.fmean(value(r) for r in rest_m)
            if name == "smaller":
                entangled = mine < 0.67 * theirs
            elif name == "darker":
                entangled = mine < theirs - 0.15
            else:
                entangled = mine > theirs + 0.2
            if entangled:
                findings.append(
                    {
                        "class": label,
                        "kind": name,
                        "mean": round(mine, 3),
                        "others_mean": round(theirs, 3),
                    }
                )
    return findings


def entanglement(rows: list[PropertyRow], limits: dict[str, float]) -> list[dict[str, Any]]:
    """Where the labeled classes and their sources or looks go together."""
    by_class: dict[str, list[PropertyRow]] = defaultdict(list)
    for row in rows:
        if row.label and row.label != "reject":
            by_class[row.label].append(row)
    if len(by_class) < 2:
        return []
    return [
        *_source_findings(by_class, "engine", lambda r: r.engine),
        *_source_findings(by_class, "site", _site),
        *_look_findings(by_class, limits),
    ]


def check_catalog(
    catalog: Catalog,
    home: Path,
    *,
    examples: int = 5,
    crops: bool | None = None,
    on_progress: CropProgress | None = None,
    found: list[list[int]] | None = None,
) -> dict[str, Any]:
    """Everything ``curator check`` reports, as one JSON-ready dict: the leaks with crops
    matched as `leaks` matches them (``found``: leaks the caller has just counted)."""
    with catalog.reading() as session:
        issues = flagged(session)
        limits = thresholds(session)
        rows = property_rows(session)
        missing = count_missing_properties(session, version=PROPERTIES_VERSION)
        hashed = hash_rows(session, hash_version=HASH_VERSION)
        duplicates = sum(1 for r in hashed if r.status == DUPLICATE)
    if found is None:
        found = leaks(catalog, home, crops=crops, on_progress=on_progress)
    matched = crops_wanted(crops, len(hashed))
    return {
        "images": len(rows),
        "duplicates": duplicates,
        "not_measured": missing,
        "thresholds": limits,
        "counts": {name: len(issues[name]) for name in ISSUES},
        "examples": {name: [i for i, _ in issues[name][:examples]] for name in ISSUES},
        "issues": {name: [i for i, _ in issues[name]] for name in ISSUES},
        "leaks": found,
        # Crop matching left out of the leaks (for the catalog's size, or as asked).
        "leaks_without_crops": not matched,
        "balance": balance(rows),
        "entanglement": entanglement(rows, limits),
    }
