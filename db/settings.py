"""Catalog settings: small JSON values under fixed keys, with defaults in code."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from db.errors import CatalogError
from db.models import Setting

#: What a catalog uses until someone changes it.
DEFAULTS: dict[str, Any] = {
    "classes": ["happy", "unhappy"],
}

#: The label that marks an image as unusable; it is accepted beside the classes.
REJECT = "reject"


def get_setting(session: Session, *, key: str) -> Any:
    row = session.get(Setting, key)
    return row.value if row is not None else DEFAULTS.get(key)


def set_setting(session: Session, *, key: str, value: Any) -> None:
    row = session.get(Setting, key)
    if row is None:
        session.add(Setting(key=key, value=value))
    else:
        row.value = value


def get_classes(session: Session) -> list[str]:
    return list(get_setting(session, key="classes"))


def set_classes(session: Session, *, classes: list[str]) -> None:
    """Replace the class names. Names must be distinct, short, and not ``reject``."""
    cleaned = [c.strip() for c in classes]
    if len(cleaned) < 2:
        raise CatalogError("a catalog needs at least two classes")
    if len(set(cleaned)) != len(cleaned):
        raise CatalogError("class names must be distinct")
    for name in cleaned:
        if not name or len(name) > 64 or name == REJECT or "/" in name or name.startswith("."):
            raise CatalogError(f"{name!r} cannot be a class name")
    set_setting(session, key="classes", value=cleaned)
