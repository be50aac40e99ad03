"""Catalog settings: small JSON values under fixed keys, with defaults in code."""

from __future__ import annotations

import unicodedata
import uuid
from typing import Any

from sqlalchemy.orm import Session

from db.errors import BadClassName, CatalogError
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


#: Longest class name: it becomes a folder name and a column of every prediction.
MAX_CLASS_NAME = 64
#: What a class name may hold besides letters, combining marks and decimal digits.
_CLASS_PUNCTUATION = frozenset(" _-.")
_ALLOWED = "letters, digits, space, _, - and ."


def _allowed_in_class_name(ch: str) -> bool:
    # Letters and marks of any script (marks write the vowels of Devanagari and many more);
    # decimal digits. Not symbols, separators other than space, or controls: a name becomes
    # a folder of an export and is printed on terminals.
    category = unicodedata.category(ch)
    return category[0] in "LM" or category == "Nd" or ch in _CLASS_PUNCTUATION


def check_class_name(name: str) -> str:
    """Return ``name`` as it is stored (NFC); raise `BadClassName` when it cannot be a class.

    NFC: the same name typed on two systems can arrive composed (``é``) or decomposed (``e``
    and a combining accent); unnormalised, those would be two classes and two export folders
    that look the same.
    """
    name = unicodedata.normalize("NFC", name)
    if not name:
        raise BadClassName(name, "it is empty")
    if len(name) > MAX_CLASS_NAME:
        raise BadClassName(name, f"it is longer than {MAX_CLASS_NAME} characters")
    for ch in name:
        if not _allowed_in_class_name(ch):
            raise BadClassName(name, f"'{ch}' is not one of {_ALLOWED}")
    if name.startswith("."):
        raise BadClassName(name, "it starts with . (a hidden folder)")
    if name != name.strip(" "):
        raise BadClassName(name, "it starts or ends with a space")
    if name == REJECT:
        raise BadClassName(name, f"{REJECT} is the label for unusable images")
    return name


def check_class_names(classes: list[str]) -> list[str]:
    """The names as `set_classes` stores them; raise `CatalogError` on the first bad one.

    Names that differ only in case are refused too: on a case-insensitive file system
    (macOS, Windows) their export folders would be one folder.
    """
    cleaned = [check_class_name(c) for c in classes]
    if len(cleaned) < 2:
        raise CatalogError("a catalog needs at least two classes")
    seen: dict[str, str] = {}
    for name in cleaned:
        other = seen.get(name.casefold())
        if other is not None:
            why = "it is given twice" if other == name else f"it differs from '{other}' in case"
            raise BadClassName(name, why)
        seen[name.casefold()] = name
    return cleaned


def set_classes(session: Session, *, classes: list[str]) -> None:
    """Replace the class names (see `check_class_names`)."""
    set_setting(session, key="classes", value=check_class_names(classes))


#: The setting naming this catalog: files kept beside it (the near-duplicate index) record
#: it, and `db copy` gives the copy a new one, so a file made for one is never read as
#: another's.
IDENTITY = "catalog_id"


def catalog_identity(session: Session) -> str | None:
    value = get_setting(session, key=IDENTITY)
    return value if isinstance(value, str) else None


def renew_identity(session: Session) -> str:
    """Give the catalog a new identity (a copy is another catalog); returns it."""
    value = uuid.uuid4().hex
    set_setting(session, key=IDENTITY, value=value)
    return value
