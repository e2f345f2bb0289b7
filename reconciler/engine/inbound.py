"""Provider webhooks as received: stored raw before we answer, deduplicated, applied later by a job."""
from __future__ import annotations

import functools
import hashlib
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError

from reconciler.engine.db import insert_ignoring_conflicts
from reconciler.engine.drivers.postgres import execute_on_live_connection, hot_path_engine
from reconciler.engine.schema import inbound_webhooks


def store_inbound(engine: Engine, provider: str, dedupe_key: str, raw_body: str, provider_order_id: str | None,
                  now: datetime) -> bool:
    """Keep a verified event; False when the same event was already kept (a duplicate is harmless)."""
    return _keep(engine, provider=provider, dedupe_key=dedupe_key, raw_body=raw_body, signature_valid=True,
                 provider_order_id=provider_order_id, received_at=now)


def store_refused(engine: Engine, provider: str, body: bytes, reason: str, now: datetime) -> bool:
    """Keep a webhook refused for its signature, for the record: already closed with why, never applied
    (no order id is read from a body nobody vouches for). One row per distinct body, however often it comes;
    a NUL byte, which PostgreSQL text cannot hold, is kept as U+FFFD."""
    return _keep(engine, provider=provider, dedupe_key=f"refused:sha256:{hashlib.sha256(body).hexdigest()}",
                 raw_body=body.decode("utf-8", "replace").replace("\x00", "\ufffd"), signature_valid=False, provider_order_id=None,
                 received_at=now, processed_at=now, process_error=reason)


def _keep(engine: Engine, **values: Any) -> bool:
    statement = _insert(engine.dialect)
    if engine.dialect.name == "postgresql":  # one round trip: autocommit, no ping; a lost reply is run again
        stored = execute_on_live_connection(hot_path_engine(engine), statement.sql, statement.parameters(values))
    else:
        stored = _group_commit(engine).run(engine, statement, values)
    return stored is not None


@dataclass(frozen=True)
class _Insert:
    """The insert compiled once, run on the driver's own cursor: SQLAlchemy's execution layer cost more CPU
    than the statement itself, and the receiver runs one per request."""

    sql: str
    names: tuple[str, ...]  # in the order the driver takes them when its parameters are positional
    positional: bool
    processors: dict[str, Callable[[Any], Any]]  # the columns' own bind conversions (UTC timestamps)

    def parameters(self, values: dict[str, Any]) -> Any:
        """The driver's parameters for `values`; a column not given is NULL."""
        converted = {name: self.processors[name](values.get(name)) if name in self.processors else values.get(name)
                     for name in _COLUMNS}
        return tuple(converted[name] for name in self.names) if self.positional else converted


class _GroupCommit:
    """SQLite has one writer and a durable commit is an fsync (1-3 ms), so a commit per webhook caps the receiver
    at a few hundred a second. Handler threads hand their insert to one writer thread, which runs whatever is
    waiting in one transaction; each caller returns after that commit, so every event is still stored before
    its 2xx. The writer ends after a second idle and a new one starts on demand."""

    def __init__(self) -> None:  # holds no engine: it is the key of a weak dictionary
        self._waiting: queue.SimpleQueue[tuple[Engine, _Insert, dict[str, Any], Future]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None

    def run(self, engine: Engine, statement: _Insert, values: dict[str, Any]) -> tuple | None:
        done: Future = Future()
        self._waiting.put((engine, statement, values, done))
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
                    results = [_execute(conn, statement, values) for _, statement, values, _ in batch]
            except Exception:  # one bad insert must not fail the others: each alone, with its own answer
                for _, statement, values, done in batch:
                    try:
                        with engine.begin() as conn:
                            done.set_result(_execute(conn, statement, values))
                    except Exception as exc:
                        done.set_exception(exc)
            else:
                for (*_, done), result in zip(batch, results):
                    done.set_result(result)


def _execute(conn: Connection, statement: _Insert, values: dict[str, Any]) -> tuple | None:
    """The insert on the driver's cursor, in `conn`'s transaction; a driver error raised as SQLAlchemy's."""
    parameters = statement.parameters(values)
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(statement.sql, parameters)
        return cursor.fetchone()
    except conn.dialect.loaded_dbapi.Error as error:
        raise DBAPIError.instance(statement.sql, parameters, error, conn.dialect.loaded_dbapi.Error,
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


@functools.cache
def _insert(dialect: Dialect) -> _Insert:
    """Built and compiled once per engine's dialect: doing so per request cost more than running it."""
    statement = insert_ignoring_conflicts(dialect.name, inbound_webhooks, ["provider", "dedupe_key"]).returning(
        inbound_webhooks.c.id)
    compiled = statement.compile(dialect=dialect, column_keys=list(_COLUMNS))
    processors = {name: process for name in _COLUMNS
                  if (process := inbound_webhooks.c[name].type.bind_processor(dialect)) is not None}
    return _Insert(str(compiled), tuple(compiled.positiontup or _COLUMNS), bool(compiled.positional), processors)


_COLUMNS = ("provider", "dedupe_key", "raw_body", "signature_valid", "provider_order_id", "received_at",
            "processed_at", "process_error")
