"""Errors raised by the data layer. Each message is a sentence meant for people."""


class CatalogError(Exception):
    """Base of every error the catalog raises on purpose."""


class UnknownImage(CatalogError):
    def __init__(self, ref: str) -> None:
        short = 0 < len(ref) < 6 and all(c in "0123456789abcdefABCDEF" for c in ref)
        need = " (a sha256 is found by 6 characters or more)" if short else ""
        super().__init__(f"no image with id or sha256 {ref!r} in the catalog{need}")


class AmbiguousImage(CatalogError):
    def __init__(self, ref: str, count: int) -> None:
        super().__init__(f"{ref!r} matches {count} images; give more characters of the sha256")


class UnknownClass(CatalogError):
    def __init__(self, label: str, classes: list[str]) -> None:
        allowed = ", ".join([*classes, "reject"])
        super().__init__(f"{label!r} is not one of this catalog's classes ({allowed})")


class CatalogBusy(CatalogError):
    """Another writer held the lock for longer than the busy timeout."""


class BadClassName(CatalogError):
    """A class name that could not be a folder of an export, or is the same as another.

    The message holds the name as given, control characters included: whoever prints it
    escapes them (curator.display), so that the escape names the exact character.
    """

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"'{name}' cannot be a class name: {why}")
        self.name = name
        self.why = why


class CatalogReadOnly(CatalogError):
    """A catalog this user can read but not write: commands that only read work on it."""


class NotACatalog(CatalogError):
    """A database, or a file, that holds no curator catalog where one must already be."""
