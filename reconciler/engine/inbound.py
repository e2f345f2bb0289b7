"""Provider webhooks as received: stored raw before we answer, deduplicated, applied later by a job."""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from sqlalchemy import Dialect, Engine

from reconciler.engine.db import insert_ignoring_conflicts
from reconciler.engine.drivers import driver_for
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
    return driver_for(engine).write_alone(engine, statement.sql, statement.parameters(values)) is not None


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
