"""Image properties and the issue types read from them: blurry, dark, bright, ...

Each issue type compares one column of ``image_properties`` with a threshold. The defaults
were measured by bench/image_issues.py on real photographs and degraded copies of them
(docs/check.md has the table); a catalog overrides any of them in its settings
(``issue_thresholds``), and every query here reads them from there. The issue queues are
kept in the rankings table by db/rankings.py, which ranks each image as `issue_ranking` does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Row, delete, func, or_, select
from sqlalchemy.orm import Session

from db.bulk import insert_rows
from db.errors import CatalogError
from db.images import ACTIVE
from db.models import Image, ImageProperty, Source
from db.settings import get_setting, set_setting
from db.touched import mark_measured


@dataclass(frozen=True)
class IssueRule:
    """An issue type: the images whose ``column`` lies below (or above) ``default``."""

    column: str
    below: bool
    default: float
    what: str
    #: The values a threshold may take (a threshold outside says nothing useful).
    lowest: float = 0.0
    highest: float = math.inf

    def flags(self, value: float, threshold: float) -> bool:
        """Whether a picture with this value shows the issue at this threshold."""
        return value < threshold if self.below else value > threshold


#: Measured by bench/image_issues.py (docs/check.md): the default of each is the threshold
#: with the best F1 between degraded copies and clean photos and their re-encodes.
ISSUES: dict[str, IssueRule] = {
    "blurry": IssueRule("sharpness", True, 0.15, "little fine detail (out of focus, upscaled)"),
    "dark": IssueRule("brightness_p50", True, 0.2, "most pixels near black", highest=1.0),
    "bright": IssueRule(
        "brightness_p5", False, 0.52, "washed out: even its shadows are light", highest=1.0
    ),
    "low-information": IssueRule("entropy", True, 3.8, "nearly blank or flat", highest=8.0),
    "grayscale": IssueRule("colourfulness", True, 9.4, "no colour (or almost none)"),
    "odd-aspect": IssueRule(
        "aspect", False, 2.8, "a strip: letterboxed, a panorama, a banner", lowest=1.0
    ),
    "small": IssueRule(
        "short_side", True, 130, "a thumbnail: its shorter side is small", lowest=1.0
    ),
}

THRESHOLDS_KEY = "issue_thresholds"


class UnknownIssue(CatalogError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no issue type {name!r}; one of {', '.join(ISSUES)}")
        self.name = name


class BadThreshold(CatalogError):
    pass


def check_issue_names(names: Iterable[str]) -> list[str]:
    """The names as given, once each; raise `UnknownIssue` on the first that is none."""
    out: list[str] = []
    for name in names:
        if name not in ISSUES:
            raise UnknownIssue(name)
        if name not in out:
            out.append(name)
    return out


def check_threshold(name: str, value: str | float) -> float:
    """A threshold for this issue type, as a number in its range; `BadThreshold` if not."""
    rule = ISSUES[check_issue_names([name])[0]]
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadThreshold(f"{name}={value!r}: a threshold is a number") from None
    if not math.isfinite(number) or not rule.lowest <= number <= rule.highest:
        where = (
            f"is at least {rule.lowest:g}"
            if math.isinf(rule.highest)
            else f"lies between {rule.lowest:g} and {rule.highest:g}"
        )
        raise BadThreshold(f"{name}={value}: a {rule.column} threshold {where}")
    return number


def thresholds(session: Session) -> dict[str, float]:
    """Each issue type's threshold in this catalog: its setting, else the default."""
    stored = get_setting(session, key=THRESHOLDS_KEY) or {}
    return {name: float(stored.get(name, rule.default)) for name, rule in ISSUES.items()}


def set_thresholds(session: Session, *, values: dict[str, float]) -> dict[str, float]:
    """Store these thresholds (checked); return all of the catalog's."""
    stored = dict(get_setting(session, key=THRESHOLDS_KEY) or {})
    for name, value in values.items():
        stored[name] = check_threshold(name, value)
    set_setting(session, key=THRESHOLDS_KEY, value=stored)
    return thresholds(session)


def add_properties(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert property rows (``image_id`` and the columns of `db.models.ImageProperty`)."""
    if rows:
        insert_rows(session, ImageProperty, rows)
        # Their places in the issue queues, kept by db/rankings.py, may have changed.
        mark_measured(session, [row["image_id"] for row in rows])


def replace_properties(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert, or replace those of another version (a backfill)."""
    ids = [row["image_id"] for row in rows]
    if ids:
        session.execute(delete(ImageProperty).where(ImageProperty.image_id.in_(ids)))
    add_properties(session, rows)


def missing_properties(
    session: Session, *, version: str, after: int = 0, limit: int = 500
) -> list[tuple[int, str]]:
    """(id, path) of images without properties of this version, by id after ``after``."""
    has = select(ImageProperty.image_id).where(ImageProperty.version == version)
    query = (
        select(Image.id, Image.path)
        .where(Image.id > after, Image.id.not_in(has))
        .order_by(Image.id)
        .limit(limit)
    )
    return [(int(i), str(p)) for i, p in session.execute(query)]


def count_missing_properties(session: Session, *, version: str) -> int:
    has = select(ImageProperty.image_id).where(ImageProperty.version == version)
    return int(session.scalar(select(func.count()).where(Image.id.not_in(has))) or 0)


def _flag(rule: IssueRule, threshold: float) -> ColumnElement[bool]:
    column = getattr(ImageProperty, rule.column)
    return column < threshold if rule.below else column > threshold


def severity(rule: IssueRule, threshold: float, value: float) -> float:
    """How far past its threshold a value lies, as a share of the threshold (0: at it)."""
    scale = max(abs(threshold), 1e-9)
    return (threshold - value) / scale if rule.below else (value - threshold) / scale


def issue_severities(
    session: Session, ids: Sequence[int], limits: dict[str, float]
) -> dict[int, dict[str, float]]:
    """For each of these images that an issue type flags at these thresholds, {issue type:
    severity}: their properties read once, every type at once."""
    columns = sorted({rule.column for rule in ISSUES.values()})
    query = select(ImageProperty.image_id, *(getattr(ImageProperty, c) for c in columns))
    out: dict[int, dict[str, float]] = {}
    for row in session.execute(query.where(ImageProperty.image_id.in_(ids))):
        found = {}
        for name, rule in ISSUES.items():
            value, limit = float(getattr(row, rule.column)), limits[name]
            if rule.flags(value, limit):
                found[name] = severity(rule, limit, value)
        if found:
            out[int(row.image_id)] = found
    return out


def flagged(
    session: Session, *, names: Sequence[str] | None = None, pending_only: bool = False
) -> dict[str, list[tuple[int, float]]]:
    """Active images each issue type flags, worst first, as (image id, severity).

    ``pending_only`` leaves out groups a person has labeled (kept or rejected): what the
    review queues show.
    """
    limits = thresholds(session)
    out: dict[str, list[tuple[int, float]]] = {}
    for name in check_issue_names(names or list(ISSUES)):
        rule = ISSUES[name]
        column = getattr(ImageProperty, rule.column)
        query = (
            select(Image.id, column)
            .join(ImageProperty, ImageProperty.image_id == Image.id)
            .where(Image.status == ACTIVE, _flag(rule, limits[name]))
        )
        if pending_only:
            query = query.where(or_(Image.label_origin.is_(None), Image.label_origin != "human"))
        found = [
            (int(i), severity(rule, limits[name], float(v))) for i, v in session.execute(query)
        ]
        found.sort(key=lambda pair: (-pair[1], pair[0]))
        out[name] = found
    return out


def issue_ranking(session: Session, *, name: str) -> list[tuple[int, float]]:
    """A review queue of issues (``issue:blurry``..., or ``issues``: every type, each image
    once at its worst), as (image id, score) with the worst first (score: minus severity)."""
    if name == "issues":
        worst: dict[int, float] = {}
        for found in flagged(session, pending_only=True).values():
            for image_id, sev in found:
                worst[image_id] = max(worst.get(image_id, -math.inf), sev)
        ranked = [(i, -s) for i, s in worst.items()]
    else:
        issue = name.removeprefix("issue:")
        ranked = [(i, -s) for i, s in flagged(session, names=[issue], pending_only=True)[issue]]
    ranked.sort(key=lambda pair: (pair[1], pair[0]))
    return ranked


#: The review queues of issues, one per type and one of all.
ISSUE_QUEUES = ("issues", *(f"issue:{name}" for name in ISSUES))


def issue_queue_counts(session: Session) -> dict[str, int]:
    """How many groups each issue queue holds (one scan of the properties per type)."""
    found = flagged(session, pending_only=True)
    counts = {f"issue:{name}": len(rows) for name, rows in found.items()}
    counts["issues"] = len({image_id for rows in found.values() for image_id, _ in rows})
    return counts


#: What `property_rows` reads: id, split, label, width, height, median brightness,
#: colourfulness, shorter side, and the first source's engine, query, page and locator.
PropertyRow = Row[
    int,
    str,
    str | None,
    int,
    int,
    float | None,
    float | None,
    int | None,
    str | None,
    str | None,
    str | None,
    str | None,
]


def property_rows(session: Session) -> list[PropertyRow]:
    """Active images with their properties, split, label and first source's engine, query
    and page: what the label/source entanglement report reads."""
    first_source = (
        select(Source.image_id, func.min(Source.id).label("sid"))
        .where(Source.image_id.is_not(None))
        .group_by(Source.image_id)
        .subquery()
    )
    query = (
        select(
            Image.id,
            Image.split,
            Image.label,
            Image.width,
            Image.height,
            ImageProperty.brightness_p50,
            ImageProperty.colourfulness,
            ImageProperty.short_side,
            Source.engine,
            Source.query,
            Source.page_url,
            Source.locator,
        )
        .join(ImageProperty, ImageProperty.image_id == Image.id, isouter=True)
        .join(first_source, first_source.c.image_id == Image.id, isouter=True)
        .join(Source, Source.id == first_source.c.sid, isouter=True)
        .where(Image.status == ACTIVE)
        .order_by(Image.id)
    )
    return list(session.execute(query))
