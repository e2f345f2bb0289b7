"""The SQLite driver: one writer at a time, taken at BEGIN (BEGIN IMMEDIATE), so plain statements are race-free;
WAL so readers never wait for the writer."""
from __future__ import annotations

import sqlite3
import time
from datetime import datetime
from typing import Any, Mapping, Sequence

from sqlalchemy import Connection, Engine, RowMapping, Table, bindparam, create_engine, event, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.sqlite import Insert
from sqlalchemy.engine import URL

from reconciler.engine.drivers.common import IN_FLIGHT_SQL, QUEUED_SQL, record_history
from reconciler.engine.schema import IN_FLIGHT, QUEUED

SQLITE_BUSY_TIMEOUT_SECONDS = 30  # how long a writer waits for another's lock before it fails


class SQLiteDriver:
    dialect = "sqlite"
    sql_folder = "sqlite"

    def create_engine(self, url: URL, pool_size: int) -> Engine:
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False})
        _sqlite_immediate_transactions(engine)
        return engine

    def outbox_queries(self, engine: Engine, table: Table) -> "SQLiteQueries":
        return SQLiteQueries(engine, table)

    def insert_ignoring_conflicts(self, table: Table, conflict_columns: Sequence[str]) -> Insert:
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))

    def lock_for_migration(self, conn: Connection) -> None:
        """Nothing to do: BEGIN IMMEDIATE already holds the one write lock."""


class SQLiteQueries:
    """BEGIN IMMEDIATE (see db.py) holds the single write lock, so plain statements are race-free."""

    def __init__(self, engine: Engine, table: Table) -> None:
        self.engine = engine
        self.table = table

    def claim(self, limit: int, worker: str, now: datetime, until: datetime) -> list[RowMapping]:
        t = self.table
        due = (select(t.c.id)
               .where(t.c.status == QUEUED_SQL, t.c.next_attempt_at <= now)
               .order_by(t.c.next_attempt_at, t.c.id)
               .limit(limit))
        with self.engine.begin() as conn:
            rows = conn.execute(
                update(t).where(t.c.id.in_(due.scalar_subquery()))
                .values(status=IN_FLIGHT, locked_by=worker, locked_until=until, attempts=t.c.attempts + 1,
                        updated_at=now)
                .returning(*t.c)).mappings().all()
            record_history(conn, t.name, [(r["id"], QUEUED, IN_FLIGHT, "claimed") for r in rows], worker, now)
        return sorted(rows, key=lambda r: (r["next_attempt_at"], r["id"]))

    def finalise_alone(self, outcomes: Sequence[Any], fields: tuple[str, ...], worker: str,
                       now: datetime) -> list[int]:
        with self.engine.begin() as conn:
            return self.finalise(conn, outcomes, fields, worker, now)

    def finalise(self, conn: Connection, outcomes: Sequence[Any], fields: tuple[str, ...], worker: str,
                 now: datetime) -> list[int]:
        t = self.table
        owned = set(conn.scalars(select(t.c.id).where(
            t.c.id.in_([o.row_id for o in outcomes]), t.c.status == IN_FLIGHT_SQL, t.c.locked_by == worker)))
        mine = [o for o in outcomes if o.row_id in owned]
        if mine:
            values: Mapping[str, Any] = {"status": bindparam("b_status"), "locked_by": None, "locked_until": None,
                                         "updated_at": now, **{f: bindparam(f"b_{f}") for f in fields}}
            conn.execute(update(t).where(t.c.id == bindparam("b_id")).values(**values), [
                {"b_id": o.row_id, "b_status": o.status, **{f"b_{f}": o.fields[f] for f in fields}} for o in mine])
            record_history(conn, t.name, [(o.row_id, IN_FLIGHT, o.status, o.cause) for o in mine], worker, now)
        return [o.row_id for o in mine]


def _enter_wal(cursor: sqlite3.Cursor) -> None:
    """journal_mode=WAL needs the database to itself and, unlike other statements, does not wait out
    busy_timeout: a replica starting at the same moment on a new file would fail. Retry within that time."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _sqlite_immediate_transactions(engine: Engine) -> None:
    """SQLite has one writer: take the write lock at BEGIN so two writers wait instead of failing mid-transaction."""

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
        _enter_wal(cursor)
        cursor.execute("PRAGMA synchronous=FULL")  # money moves on every commit: survive power loss
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
