"""Provider webhooks as received: stored raw before we answer, deduplicated, applied later by a job."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from reconciler.engine.db import insert_ignoring_conflicts
from reconciler.engine.schema import inbound_webhooks


def store_inbound(engine: Engine, provider: str, dedupe_key: str, raw_body: str, provider_order_id: str | None,
                  now: datetime) -> bool:
    """Keep a verified event; False when the same event was already kept (a duplicate is harmless)."""
    with engine.begin() as conn:
        stored = conn.execute(
            insert_ignoring_conflicts(engine.dialect.name, inbound_webhooks, ["provider", "dedupe_key"])
            .values(provider=provider, dedupe_key=dedupe_key, raw_body=raw_body, signature_valid=True,
                    provider_order_id=provider_order_id, received_at=now)
            .returning(inbound_webhooks.c.id)).first()
    return stored is not None
