"""Alembic environment for the curator catalog.

curator runs migrations itself when a catalog opens (db.catalog.open_catalog), handing its own
connection over in ``config.attributes["connection"]``. Developers can also run
``alembic -x url=sqlite:///path/catalog.db revision --autogenerate -m "..."`` from the repo root.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from db.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    engine = create_engine(url)
    with engine.begin() as conn:
        _configure(conn)
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("curator's migrations run online only; pass -x url=... instead")
run_migrations_online()
