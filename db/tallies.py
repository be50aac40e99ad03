"""Counts kept by the database's triggers (alembic 0005), and the same counts from the rows.

Names: ``images``, ``bytes``, ``status:<status>``; for active images ``split:<split>``,
``label:<label>`` and ``origin:<label origin>`` (the group's label, see db/grouplabels.py);
for sources ``outcome:<outcome>`` and, for failed ones, ``reason:<reason or unknown>``; the
rows of each kept ranking ``queue:<name>`` (db/rankings.py); ``predictions``, those of models
that did not train on their image ``predictions:independent``, and ``predictions:model:<id>``
(alembic 0010).
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Image, Prediction, Ranked, Source, Tally


def tallies(session: Session) -> dict[str, int]:
    """Every non-zero tally, by name: one small read whatever the catalog's size."""
    return {name: int(n) for name, n in session.execute(select(Tally.name, Tally.count)) if n}


def recount(session: Session) -> dict[str, int]:
    """The same tallies counted from the rows (the slow way they replace): for checking."""
    out: dict[str, int] = {}

    def add(prefix: str, query: object) -> None:
        for key, n in session.execute(query):  # type: ignore[call-overload]
            if n:
                out[f"{prefix}{key}"] = int(n)

    out["images"] = int(session.scalar(select(func.count()).select_from(Image)) or 0)
    out["bytes"] = int(session.scalar(select(func.coalesce(func.sum(Image.bytes), 0))) or 0)
    add("status:", select(Image.status, func.count()).group_by(Image.status))
    active = Image.status == "active"
    add("split:", select(Image.split, func.count()).where(active).group_by(Image.split))
    add("label:", select(Image.label, func.count()).where(active, Image.label.is_not(None))
        .group_by(Image.label))  # fmt: skip
    add("origin:", select(Image.label_origin, func.count())
        .where(active, Image.label_origin.is_not(None)).group_by(Image.label_origin))  # fmt: skip
    add("queue:", select(Ranked.queue, func.count()).group_by(Ranked.queue))
    out["predictions"] = int(session.scalar(select(func.count()).select_from(Prediction)) or 0)
    out["predictions:independent"] = int(
        session.scalar(select(func.count()).where(Prediction.in_sample.is_(False))) or 0
    )
    add("predictions:model:", select(Prediction.model_id, func.count())
        .group_by(Prediction.model_id))  # fmt: skip
    add("outcome:", select(Source.outcome, func.count()).group_by(Source.outcome))
    reason = func.coalesce(Source.reason, "unknown")
    add("reason:", select(reason, func.count()).where(Source.outcome == "failed").group_by(reason))
    return {k: v for k, v in out.items() if v}
