"""Alembic environment of the annotation store.

The store runs migrations itself (``annotations.database.migrate`` passes an open connection in
``config.attributes["connection"]``). For writing a new migration from the command line::

    alembic -c annotations/migrations/alembic.ini -x url=sqlite:///studio.db revision \
        --autogenerate -m "what changed"
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from annotations.database import make_engine
from annotations.schema import Base


def run_migrations(connection: Connection) -> None:
    """Run the pending migrations on ``connection`` (SQLite uses batch mode for ALTER TABLE)."""
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    """Use the connection handed over by the store, or open the URL given with ``-x url=``."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("pass the database with: alembic ... -x url=sqlite:///studio.db")
    engine = make_engine(url)
    with engine.connect() as own_connection:
        run_migrations(own_connection)
    engine.dispose()


main()
