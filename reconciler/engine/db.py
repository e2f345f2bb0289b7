"""Database engines with the settings the outbox relies on, through the database's driver."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from sqlalchemy import Engine, Table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.sql.dml import Insert

from reconciler.config import mask_passwords
from reconciler.engine.drivers import driver_for

MAX_CAUSE_CHARS = 300


def normalise_url(url: str) -> str:
    """Let users write plain postgresql:// URLs; the driver is psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, pool_size: int = 5) -> Engine:
    parsed = make_url(normalise_url(url))
    return driver_for(parsed.get_dialect().name).create_engine(parsed, pool_size)


def missing_sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL when it does not exist yet: connecting would create it, empty."""
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database)
    return None if path.exists() else path


def database_error_cause(exc: BaseException) -> str:
    """The driver's own words for why the database cannot be used (database or role does not exist, connection
    refused, unknown host ...), on one line and with any password masked: what a person must fix."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    words = re.sub(r"\s+", " ", str(cause)).strip() or type(cause).__name__
    return mask_passwords(words)[:MAX_CAUSE_CHARS]


def insert_ignoring_conflicts(dialect_name: str, table: Table, conflict_columns: Sequence[str],
                              where: str | None = None) -> Insert:
    """INSERT … ON CONFLICT (columns) [WHERE partial index predicate] DO NOTHING, in the database's own
    spelling."""
    return driver_for(dialect_name).insert_ignoring_conflicts(table, conflict_columns, where)


def is_database_unavailable(exc: BaseException) -> bool:
    """Is this the database being away (down, restarting, unreachable), rather than a bug?"""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated
