"""Provider webhooks as received: stored raw before we answer, deduplicated, applied later by a job."""
from __future__ import annotations

import functools
import hashlib
import queue
import threading
from concurrent.futures import Future
from datetime import datetime
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, Row
from sqlalchemy.sql.dml import Insert

from reconciler.engine.db import insert_ignoring_conflicts
from reconciler.engine.drivers.postgres import hot_path_engine, run_on_live_connection
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
    statement = _insert(engine.dialect.name)
    if engine.dialect.name == "postgresql":  # one round trip: autocommit, no ping; a lost reply is run again
        stored = run_on_live_connection(hot_path_engine(engine),
                                        lambda conn, _again: conn.execute(statement, values).first())
    else:
        stored = _group_commit(engine).run(engine, statement, values)
    return stored is not None


class _GroupCommit:
    """SQLite has one writer and a durable commit is an fsync (1-3 ms), so a commit per webhook caps the receiver
    at a few hundred a second. Handler threads hand their insert to one writer thread, which runs whatever is
    waiting in one transaction; each caller returns after that commit, so every event is still stored before
    its 2xx. The writer ends after a second idle and a new one starts on demand."""

    def __init__(self) -> None:  # holds no engine: it is the key of a weak dictionary
        self._waiting: queue.SimpleQueue[tuple[Engine, Insert, dict[str, Any], Future]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None

    def run(self, engine: Engine, statement: Insert, values: dict[str, Any]) -> Row | None:
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
                    results = [conn.execute(statement, values).first() for _, statement, values, _ in batch]
            except Exception:  # one bad insert must not fail the others: each alone, with its own answer
                for _, statement, values, done in batch:
                    try:
                        with engine.begin() as conn:
                            done.set_result(conn.execute(statement, values).first())
                    except Exception as exc:
                        done.set_exception(exc)
            else:
                for (*_, done), result in zip(batch, results):
                    done.set_result(result)


_group_commits: WeakKeyDictionary[Engine, _GroupCommit] = WeakKeyDictionary()
_group_commits_lock = threading.Lock()


def _group_commit(engine: Engine) -> _GroupCommit:
    with _group_commits_lock:
        if engine not in _group_commits:
            _group_commits[engine] = _GroupCommit()
        return _group_commits[engine]


@functools.cache
def _insert(dialect_name: str) -> Insert:
    """Built once: the receiver stores an event per request, and building the statement cost more than running it."""
    return insert_ignoring_conflicts(dialect_name, inbound_webhooks, ["provider", "dedupe_key"]).returning(
        inbound_webhooks.c.id)
