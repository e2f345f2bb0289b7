"""Database engines with the settings the outbox relies on, through the database's driver."""
from __future__ import annotations

from typing import Sequence

from sqlalchemy import Engine, Table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.sql.dml import Insert

from reconciler.engine.drivers import driver_for


def normalise_url(url: str) -> str:
    """Let users write plain postgresql:// URLs; the driver is psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, pool_size: int = 5) -> Engine:
    parsed = make_url(normalise_url(url))
    return driver_for(parsed.get_dialect().name).create_engine(parsed, pool_size)


def insert_ignoring_conflicts(dialect_name: str, table: Table, conflict_columns: Sequence[str]) -> Insert:
    """INSERT … ON CONFLICT (columns) DO NOTHING, in the database's own spelling."""
    return driver_for(dialect_name).insert_ignoring_conflicts(table, conflict_columns)


def is_database_unavailable(exc: BaseException) -> bool:
    """Is this the database being away (down, restarting, unreachable), rather than a bug?"""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated
