"""Database drivers: everything that differs between databases lives in one driver each, behind `Driver`.

The engine asks `driver_for(engine)` and never names a dialect itself. A third database (MariaDB/MySQL, say)
is one new module here, one entry in DRIVERS and its migrations under sql/<sql_folder>/; the conformance suite
(tests/engine/test_drivers.py) then tells whether it keeps the engine's promises.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol, Sequence

from sqlalchemy import Connection, Engine, RowMapping, Table
from sqlalchemy.engine import URL
from sqlalchemy.sql.dml import Insert

from reconciler.engine.drivers.postgres import PostgresDriver
from reconciler.engine.drivers.sqlite import SQLiteDriver


class OutboxQueries(Protocol):
    """The outbox's hot path on one table. Every transition also goes to status_history, in the same
    transaction."""

    def claim(self, limit: int, worker: str, now: datetime, until: datetime) -> list[RowMapping]:
        """Mark up to `limit` due queued rows in_flight for `worker` until `until` (attempts + 1) and return
        them, oldest due first; committed before it returns. Rows another claim holds are never returned."""

    def finalise(self, conn: Connection, outcomes: Sequence[Any], fields: tuple[str, ...], worker: str,
                 now: datetime) -> list[int]:
        """In the caller's transaction, write each outcome (status and `fields`) to its row if the row is still
        in_flight AND held by `worker` (the fence); the ids written."""

    def finalise_alone(self, outcomes: Sequence[Any], fields: tuple[str, ...], worker: str,
                       now: datetime) -> list[int]:
        """finalise() as a transaction of its own (the driver may make it one round trip)."""


class Driver(Protocol):
    dialect: str  # SQLAlchemy's dialect name
    sql_folder: str  # the folder under sql/ with this database's migrations

    def create_engine(self, url: URL, pool_size: int) -> Engine:
        """An engine with the session settings the engine relies on (locking, durability)."""

    def outbox_queries(self, engine: Engine, table: Table) -> OutboxQueries: ...

    def insert_ignoring_conflicts(self, table: Table, conflict_columns: Sequence[str],
                                  where: str | None = None) -> Insert:
        """INSERT … that does nothing when a row with the same `conflict_columns` exists (among the rows
        matching `where`: the predicate of a partial unique index, as SQL)."""

    def lock_for_migration(self, conn: Connection) -> None:
        """Make replicas migrating at once take turns, for the rest of this transaction."""

    def write_alone(self, engine: Engine, sql: str, parameters: Any) -> tuple | None:
        """Run one small write of driver SQL (in the driver's parameter style) as a durable transaction of its
        own, the cheapest way this database allows (a statement per request, e.g. a received webhook); its
        first row. Errors are raised as SQLAlchemy's."""


DRIVERS: dict[str, Driver] = {driver.dialect: driver for driver in (PostgresDriver(), SQLiteDriver())}


def driver_for(engine_or_dialect: Engine | Connection | str) -> Driver:
    name = engine_or_dialect if isinstance(engine_or_dialect, str) else engine_or_dialect.dialect.name
    try:
        return DRIVERS[name]
    except KeyError:
        raise ValueError(f"no driver for the {name} database (known: {', '.join(sorted(DRIVERS))})") from None
