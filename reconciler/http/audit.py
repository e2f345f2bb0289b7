"""The api_calls audit: every provider request and its answer, linked to its order. Clients never pass
headers here, so API keys and tokens cannot reach the table."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass

from sqlalchemy import Engine, insert

from reconciler.engine.clock import Clock, utcnow
from reconciler.engine.db import is_database_unavailable
from reconciler.engine.logs import RepeatedFailure
from reconciler.engine.schema import api_calls

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiCall:
    provider: str
    method: str
    url: str
    request_body: str | None
    status_code: int | None
    response_body: str | None
    error: str | None
    duration_ms: int
    order_table: str | None = None  # the order the call was made for, when it was made for one
    order_id: int | None = None


class AuditLog:
    """A recorder for a client's `audit` hook. With `max_delay_seconds` 0 each call is written at once, in its
    own transaction. Otherwise calls wait in memory and a background thread writes them together, one INSERT
    every `max_delay_seconds`, off the threads that talk to the provider; `flush()` writes what waits now. A
    crash loses at most that much of the audit, never an order: the order's own row says what happened."""

    def __init__(self, engine: Engine, clock: Clock = utcnow, max_delay_seconds: float = 0.0) -> None:
        self.engine = engine
        self.clock = clock
        self.max_delay_seconds = max_delay_seconds
        self._waiting: list[dict] = []
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        self._writer: threading.Thread | None = None
        self._outage = RepeatedFailure(log, "writing the api_calls audit")

    def __call__(self, call: ApiCall) -> None:
        with self._lock:
            self._waiting.append({**asdict(call), "created_at": self.clock()})
            if self.max_delay_seconds > 0 and self._writer is None:
                self._writer = threading.Thread(target=self._write_periodically, name="api-audit", daemon=True)
                self._writer.start()
        if self.max_delay_seconds <= 0:
            self.flush()

    def flush(self) -> None:
        """Write what waits; returns only once every call recorded before it is written (by it or by a flush
        already under way in another thread)."""
        with self._writing:
            with self._lock:
                rows, self._waiting = self._waiting, []
            if not rows:
                return
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(api_calls), rows)
            except Exception:
                with self._lock:  # kept for the next flush
                    self._waiting[:0] = rows
                raise

    def _write_periodically(self) -> None:
        while True:
            time.sleep(self.max_delay_seconds)
            self.write_waiting()

    def write_waiting(self) -> None:
        """One write of the background writer: a failure is logged once while it repeats (the rows wait for
        the next write), a traceback only when the database is not simply away."""
        try:
            self.flush()
        except Exception as exc:
            self._outage.failed(exc, traceback=not is_database_unavailable(exc),
                                hint="; the calls wait in memory for the next write")
        else:
            self._outage.succeeded()
