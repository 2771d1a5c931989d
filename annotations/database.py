"""Opening the database: engine settings per backend, write transactions, schema migrations.

SQLite (the default) runs in WAL mode with foreign keys on and ``synchronous=FULL``, so a committed
edit survives a crash or power loss. Write transactions start with ``BEGIN IMMEDIATE``: the write
lock is taken up front and a second writer waits (``busy_timeout``) instead of failing half-way.
PostgreSQL is used through psycopg 3 (``postgresql://`` URLs are mapped to ``postgresql+psycopg``).

Migrations are Alembic scripts shipped in ``annotations/migrations``; :func:`migrate` upgrades a
database to the newest revision and is run whenever a :class:`~annotations.store.Store` opens.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import Session

from annotations.errors import SchemaVersionError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_MIGRATION_LOCK_KEY = 0x46A57157  # PostgreSQL advisory lock serialising concurrent migrations
_SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalise_url(url: str) -> str:
    """Map plain ``postgresql://``/``postgres://`` URLs to the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` with the store's per-backend settings.

    For SQLite the folder of the database file is created if needed; ``sqlite://`` (in memory)
    works for a single thread, e.g. in tests.
    """
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000})
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    """Per-connection pragmas; we issue BEGIN ourselves (the driver's implicit one is disabled)."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        "foreign_keys=ON",
        "synchronous=FULL",
        f"busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _begin_sqlite_transaction(connection: Connection) -> None:
    """``BEGIN IMMEDIATE`` for write transactions (execution option ``write=True``)."""
    immediate = connection.get_execution_options().get("write", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on any exception."""
    with Session(engine.execution_options(write=True), expire_on_commit=False) as session:
        with session.begin():
            yield session


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A session for reads (one transaction, so reads within it see one consistent state)."""
    with Session(engine, expire_on_commit=False) as session:
        with session.begin():
            yield session


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configuration pointing at the packaged migrations (and at ``connection``)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration revision this version of the package knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database to ``revision`` (default: newest), in one transaction.

    Concurrent openers are serialised (SQLite write lock, PostgreSQL advisory lock), so two
    processes opening a fresh database do not both create the tables.

    Raises:
        SchemaVersionError: the database carries a revision this package does not know (it was
            written by a newer version).
    """
    with engine.execution_options(write=True).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})")
        try:
            command.upgrade(alembic_config(connection), revision)
        except CommandError as error:
            raise SchemaVersionError(
                f"cannot upgrade the database schema: {error}; it was probably written by a "
                f"newer version of fastinst-studio"
            ) from error


def table_names(engine: Engine) -> list[str]:
    """Names of the tables in the database (for diagnostics and tests)."""
    return sorted(inspect(engine).get_table_names())
