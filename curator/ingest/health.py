"""Health checks on the properties ingest measures: the issue types, refusing them at the
door, settings, and the backfill that measures images imported before properties existed.

The issue types and their thresholds are `db.properties.ISSUES` (their defaults measured by
bench/image_issues.py); this module applies them to one picture as it arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from curator.errors import CuratorError, InvalidImage
from curator.ingest.imaging import Limits, analyze
from curator.ingest.properties import PROPERTIES_VERSION, Properties
from curator.runs import tracked_run
from db.catalog import Catalog
from db.properties import (
    ISSUES,
    check_issue_names,
    check_threshold,
    count_missing_properties,
    missing_properties,
    replace_properties,
    set_thresholds,
    thresholds,
)


def issues_of(properties: Properties, limits: dict[str, float]) -> list[str]:
    """The issue types these properties show, at these thresholds."""
    found = []
    for name, rule in ISSUES.items():
        if rule.flags(float(getattr(properties, rule.column)), limits.get(name, rule.default)):
            found.append(name)
    return found


def refuse_issues(
    properties: Properties, width: int, height: int, reject: tuple[tuple[str, float], ...]
) -> None:
    """Raise `InvalidImage` (reason ``issue:<type>``) for the first issue type refused."""
    for name, threshold in reject:
        if name in issues_of(properties, {name: threshold}):
            rule = ISSUES[name]
            value = getattr(properties, rule.column)
            side = "under" if rule.below else "over"
            raise InvalidImage(
                f"issue:{name}",
                f"{name}: {rule.what} ({rule.column} {value:.3g}, {side} {threshold:g}; "
                f"{width} x {height} pixels)",
            )


def parse_issue_list(text: str) -> list[str]:
    """``small,low-information`` -> the names, checked (`db.properties.UnknownIssue`)."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise CuratorError("name at least one issue type, such as small,low-information")
    return check_issue_names(names)


def reject_limits(catalog: Catalog, limits: Limits, names: list[str]) -> Limits:
    """``limits`` refusing these issue types at the catalog's thresholds."""
    if not names:
        return limits
    with catalog.reading() as session:
        values = thresholds(session)
    return Limits(
        max_bytes=limits.max_bytes,
        max_pixels=limits.max_pixels,
        min_side=limits.min_side,
        reject_issues=tuple((name, values[name]) for name in names),
    )


def parse_settings(pairs: list[str]) -> dict[str, float]:
    """``["blurry=0.02", ...]`` -> {issue: threshold}, every one checked."""
    out: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise CuratorError(f"{pair!r}: give a threshold as ISSUE=VALUE, such as blurry=0.02")
        out[check_issue_names([name.strip()])[0]] = check_threshold(name.strip(), value.strip())
    return out


def store_settings(catalog: Catalog, values: dict[str, float]) -> dict[str, float]:
    with catalog.writing() as session:
        return set_thresholds(session, values=values)


#: Images measured per write transaction of a backfill.
BACKFILL_BATCH = 200
#: What a backfill reads: the originals the catalog holds, let in by the limits of their own
#: import (``--min-side``, ``--max-bytes``), so that only the guard against decompression
#: bombs stays.
STORED = Limits(max_bytes=2**62, min_side=1, reject_issues=())


def backfill(
    catalog: Catalog,
    home: Path,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Measure every image that has no properties of this version yet, from its original
    (the same decode as at ingest). Each batch commits on its own, so an interrupted
    backfill keeps what it measured and a rerun goes on from there. An original that cannot
    be read is counted and skipped. Returns counts."""
    with catalog.reading() as session:
        total = count_missing_properties(session, version=PROPERTIES_VERSION)
    counts = {"measured": 0, "unreadable": 0, "total": total}
    if not total:
        return counts
    with tracked_run(catalog, kind="check-backfill", params={}) as run:
        after = 0
        while True:
            with catalog.reading() as session:
                todo = missing_properties(
                    session, version=PROPERTIES_VERSION, after=after, limit=BACKFILL_BATCH
                )
            if not todo:
                break
            rows = []
            for image_id, relpath in todo:
                try:
                    analysis = analyze((home / relpath).read_bytes(), STORED)
                except (OSError, InvalidImage):
                    counts["unreadable"] += 1
                    continue
                assert analysis.properties is not None
                rows.append({"image_id": image_id, **analysis.properties.as_row()})
            with catalog.writing() as session:
                replace_properties(session, rows)
            counts["measured"] += len(rows)
            after = todo[-1][0]
            run.counts = dict(counts)
            if on_progress:
                on_progress(counts["measured"] + counts["unreadable"], total)
    return counts
