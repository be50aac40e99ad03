"""Settings: one object, one precedence: flag > environment variable > default."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import platformdirs

HOME_ENV = "CURATOR_HOME"
DB_URL_ENV = "CURATOR_DB_URL"


@dataclass(frozen=True)
class Layout:
    """What a home folder holds, and where: the one place that names its parts.

    catalog.db                        the SQLite catalog (unless CURATOR_DB_URL says)
    images/ab/<sha256>.<ext>          the originals, by content (rows store this path)
    thumbs.db                         the thumbnails the review page shows
    models/<id>/                      a model's files: model.pt, report.html, checkpoints
    cache/explain/<model>/<id>.png    Grad-CAM figures the review page made
    cache/near-index-r<radius>.bin    the near-duplicate index, checked against the catalog
    cache/pixels/<size>-<fit>/        pictures decoded at a model's size (classifier/pixelcache.py)
    logs/                             errors.log: the tracebacks of unexpected errors
    tmp/                              files being written, renamed into place when whole
    """

    home: Path

    IMAGES: ClassVar[str] = "images"
    MODELS: ClassVar[str] = "models"
    EXPLAIN: ClassVar[str] = "cache/explain"

    @property
    def catalog(self) -> Path:
        return self.home / "catalog.db"

    @property
    def images(self) -> Path:
        return self.home / self.IMAGES

    @property
    def thumbs(self) -> Path:
        return self.home / "thumbs.db"

    @property
    def models(self) -> Path:
        return self.home / self.MODELS

    @property
    def explain_cache(self) -> Path:
        return self.home / self.EXPLAIN

    @property
    def pixel_cache(self) -> Path:
        return self.home / "cache" / "pixels"

    def near_index(self, radius: int) -> Path:
        """The near-duplicate index file for this radius (curator/ingest/nearfile.py)."""
        return self.home / "cache" / f"near-index-r{radius}.bin"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def tmp(self) -> Path:
        return self.home / "tmp"

    @staticmethod
    def image_relpath(sha256: str, ext: str) -> str:
        # One level of 256 folders, as git does: 4,000 files a folder at a million images,
        # and far fewer folders to create than two levels for the catalogs most people have.
        return f"{Layout.IMAGES}/{sha256[:2]}/{sha256}.{ext}"

    @staticmethod
    def model_relpath(model_id: int | str) -> str:
        return f"{Layout.MODELS}/{model_id}"


@dataclass(frozen=True)
class Settings:
    """Where a catalog's data lives: ``home`` holds images, thumbnails and, by default, the
    SQLite catalog (see `Layout`); ``db_url`` may point the catalog elsewhere (PostgreSQL)."""

    home: Path
    db_url: str

    @property
    def layout(self) -> Layout:
        return Layout(self.home)


def default_home() -> Path:
    return platformdirs.user_data_path("curator", appauthor=False)


def load_settings(*, home: Path | str | None = None, db_url: str | None = None) -> Settings:
    """Resolve the settings from flags (the arguments), then the environment, then defaults."""
    resolved = Path(home or os.environ.get(HOME_ENV) or default_home()).expanduser().absolute()
    url = db_url or os.environ.get(DB_URL_ENV) or f"sqlite:///{Layout(resolved).catalog}"
    return Settings(home=resolved, db_url=url)
