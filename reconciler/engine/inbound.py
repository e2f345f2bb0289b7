"""Provider webhooks as received: stored raw before we answer, deduplicated, applied later by a job."""
from __future__ import annotations

import functools
import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.sql.dml import Insert

from reconciler.engine.db import insert_ignoring_conflicts
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
    with engine.begin() as conn:
        stored = conn.execute(_insert(engine.dialect.name), values).first()
    return stored is not None


@functools.cache
def _insert(dialect_name: str) -> Insert:
    """Built once: the receiver stores an event per request, and building the statement cost more than running it."""
    return insert_ignoring_conflicts(dialect_name, inbound_webhooks, ["provider", "dedupe_key"]).returning(
        inbound_webhooks.c.id)
