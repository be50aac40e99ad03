"""Settings: one object, one precedence: flag > environment variable > default."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

HOME_ENV = "CURATOR_HOME"
DB_URL_ENV = "CURATOR_DB_URL"


@dataclass(frozen=True)
class Settings:
    """Where a catalog's data lives: ``home`` holds images, thumbnails and, by default, the
    SQLite catalog; ``db_url`` may point the catalog elsewhere (PostgreSQL, say)."""

    home: Path
    db_url: str

    @property
    def images_dir(self) -> Path:
        return self.home / "images"

    @property
    def thumbs_dir(self) -> Path:
        return self.home / "thumbs"


def default_home() -> Path:
    return platformdirs.user_data_path("curator", appauthor=False)


def load_settings(*, home: Path | str | None = None, db_url: str | None = None) -> Settings:
    """Resolve the settings from flags (the arguments), then the environment, then defaults."""
    resolved = Path(home or os.environ.get(HOME_ENV) or default_home()).expanduser().absolute()
    url = db_url or os.environ.get(DB_URL_ENV) or f"sqlite:///{resolved / 'catalog.db'}"
    return Settings(home=resolved, db_url=url)
