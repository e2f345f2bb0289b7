"""The SQLite driver: one writer at a time, taken at BEGIN (BEGIN IMMEDIATE), so plain statements are race-free;
WAL so readers never wait for the writer."""
from __future__ import annotations

import queue
import sqlite3
import threading
import time
from concurrent.futures import Future
from datetime import datetime
from typing import Any, Mapping, Sequence
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Engine, RowMapping, Table, bindparam, create_engine, event, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.sqlite import Insert
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

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

    def insert_ignoring_conflicts(self, table: Table, conflict_columns: Sequence[str],
                                  where: str | None = None) -> Insert:
        return sqlite.insert(table).on_conflict_do_nothing(
            index_elements=list(conflict_columns), index_where=text(where) if where is not None else None)

    def lock_for_migration(self, conn: Connection) -> None:
        """Nothing to do: BEGIN IMMEDIATE already holds the one write lock."""

    def write_alone(self, engine: Engine, sql: str, parameters: Any) -> tuple | None:
        """Batched with the other threads' writes into one durable commit (see _GroupCommit)."""
        return _group_commit(engine).run(engine, sql, parameters)


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


class _GroupCommit:
    """SQLite has one writer and a durable commit is an fsync (1-3 ms), so a commit per write caps a receiver at
    a few hundred a second. Threads hand their write to one writer thread, which runs whatever is
    waiting in one transaction; each caller returns after that commit, so every write is still durable before
    the caller answers anyone. The writer ends after a second idle and a new one starts on demand."""

    def __init__(self) -> None:  # holds no engine: it is the key of a weak dictionary
        self._waiting: queue.SimpleQueue[tuple[Engine, str, Any, Future]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None

    def run(self, engine: Engine, sql: str, parameters: Any) -> tuple | None:
        done: Future = Future()
        self._waiting.put((engine, sql, parameters, done))
        with self._lock:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write, name="inbound-writer", daemon=True)
                self._writer.start()
        return done.result()

    def _write(self) -> None:
        while True:
            try:
                batch = [self._waiting.get(timeout=1.0)]
            except queue.Empty:
                with self._lock:  # run() starts a writer after its put, under this lock: nothing is left behind
                    if self._waiting.empty():
                        self._writer = None
                        return
                continue
            while not self._waiting.empty():
                batch.append(self._waiting.get())
            engine = batch[0][0]
            try:
                with engine.begin() as conn:
                    results = [_execute(conn, sql, parameters) for _, sql, parameters, _ in batch]
            except Exception:  # one bad insert must not fail the others: each alone, with its own answer
                for _, sql, parameters, done in batch:
                    try:
                        with engine.begin() as conn:
                            done.set_result(_execute(conn, sql, parameters))
                    except Exception as exc:
                        done.set_exception(exc)
            else:
                for (*_, done), result in zip(batch, results):
                    done.set_result(result)


def _execute(conn: Connection, sql: str, parameters: Any) -> tuple | None:
    """One statement on the driver's cursor, in `conn`'s transaction; a driver error raised as SQLAlchemy's."""
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(sql, parameters)
        return cursor.fetchone()
    except conn.dialect.loaded_dbapi.Error as error:
        raise DBAPIError.instance(sql, parameters, error, conn.dialect.loaded_dbapi.Error,
                                  dialect=conn.dialect) from error
    finally:
        cursor.close()


_group_commits: WeakKeyDictionary[Engine, _GroupCommit] = WeakKeyDictionary()
_group_commits_lock = threading.Lock()


def _group_commit(engine: Engine) -> _GroupCommit:
    with _group_commits_lock:
        if engine not in _group_commits:
            _group_commits[engine] = _GroupCommit()
        return _group_commits[engine]
