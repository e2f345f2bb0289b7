"""Database engines with the settings the outbox relies on, for SQLite and PostgreSQL."""
from __future__ import annotations

import sqlite3
import threading
import time
from typing import Callable, TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

T = TypeVar("T")
SQLITE_BUSY_TIMEOUT_SECONDS = 30  # how long a writer waits for another's lock before it fails


def normalise_url(url: str) -> str:
    """Let users write plain postgresql:// URLs; the driver is psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def insert_ignoring_conflicts(dialect_name: str, table: Table, conflict_columns: list[str]):
    """INSERT … ON CONFLICT (columns) DO NOTHING, in the dialect's own spelling."""
    dialect_insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    return dialect_insert(table).on_conflict_do_nothing(index_elements=conflict_columns)


def make_engine(url: str, pool_size: int = 5) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _sqlite_immediate_transactions(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size)


_hot_path_engines: WeakKeyDictionary[Engine, dict[str, Engine]] = WeakKeyDictionary()
_hot_path_engines_lock = threading.Lock()


def hot_path_engine(engine: Engine, options: str = "") -> Engine:
    """PostgreSQL: a pool for the outbox's one-statement claim and finalise, kept apart from `engine`'s pool:
    autocommit, so each statement is one round trip, no ping (see run_on_live_connection) and the libpq
    session `options` the statement needs. One per `engine` and `options`, disposed with `engine`."""
    with _hot_path_engines_lock:
        engines = _hot_path_engines.setdefault(engine, {})
        if options not in engines:
            session = " ".join(filter(None, [engine.url.query.get("options"), options]))
            hot = create_engine(engine.url.update_query_dict({"options": session}), isolation_level="AUTOCOMMIT")
            event.listen(engine, "engine_disposed", lambda _engine: hot.dispose())
            engines[options] = hot
        return engines[options]


def run_on_live_connection(engine: Engine, work: Callable[[Connection, bool], T]) -> T:
    """Run work(connection, again=False) on a pool that does not ping. If the server had dropped the
    connection (a restart, an idle timeout), the pool drops its other old connections too and work runs
    once more, with again=True: the first run may have committed before its reply was lost."""
    try:
        with engine.connect() as conn:
            return work(conn, False)
    except DBAPIError as error:
        if not error.connection_invalidated:
            raise
    with engine.connect() as conn:
        return work(conn, True)


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
