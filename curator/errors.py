"""Errors curator raises on purpose. The CLI prints their message as one line and exits 1.

Library code raises these and never prints or exits; per-item failures (one bad file among
thousands) are not errors at all but rows with a reason.
"""

from __future__ import annotations


class CuratorError(Exception):
    """Base of every error with a message meant for people."""


class PathNotFound(CuratorError):
    def __init__(self, path: str) -> None:
        super().__init__(f"no such file or folder: {path}")


class InvalidImage(CuratorError):
    """One input that is not a usable image; ``reason`` is a short code for summaries."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class ExportError(CuratorError):
    pass


class BadRows(CuratorError):
    """Rows of one request (a CSV file, a list of ids) that cannot be used, each with what is
    wrong with it, in the order given; nothing of the request was done."""

    def __init__(self, what: str, problems: list[str], outcome: str) -> None:
        super().__init__(f"{len(problems)} {what} are wrong; {outcome}")
        self.problems = problems
        self.outcome = outcome


class DamagedManifest(ExportError):
    """An export folder's manifest that curator did not write as it reads: nothing is touched,
    since a later export deletes what the manifest lists."""

    def __init__(self, manifest: str, why: str) -> None:
        super().__init__(
            f"{manifest} is damaged: {why}; nothing was changed (export into an empty folder)"
        )


class LinkedFolder(ExportError):
    """A split or class folder of an export that is a symbolic link: writing into it, or
    removing from it, would act on whatever it points at."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path} is a symbolic link; an export writes only into its own folders, so nothing "
            "was changed (export into an empty folder)"
        )


class UnusableModel(CuratorError):
    """A model that cannot be the default: not a finished model of curator train, its file
    gone, or trained for other classes than the catalog's."""


class ModelInUse(CuratorError):
    """A model that a command running now trains, scores or starts from."""


class UnsafeModelFolder(CuratorError):
    """A model's folder that removing it could reach past: a symbolic link, a folder that is
    not the model's own under the home's models folder, or one another model's row names."""
