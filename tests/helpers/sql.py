"""Reading a test's catalog directly, whatever engine holds it (SQLite or PostgreSQL)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, text

from curator.config import load_settings


def rows(query: str, url: str | None = None, **params: Any) -> list[tuple]:
    """The rows of one query (``:name`` parameters) on the catalog that `url` names, by default
    the one the environment points at (CURATOR_DB_URL, else CURATOR_HOME's SQLite file)."""
    engine = create_engine(url or load_settings().db_url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(query), params)]
    finally:
        engine.dispose()
