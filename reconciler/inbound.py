"""Provider webhooks as received: stored raw before we answer, deduplicated, applied later by a job."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite

from reconciler.schema import inbound_webhooks


def store_inbound(engine: Engine, provider: str, dedupe_key: str, raw_body: str, provider_order_id: str | None,
                  now: datetime) -> bool:
    """Keep a verified event; False when the same event was already kept (a duplicate is harmless)."""
    dialect_insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    with engine.begin() as conn:
        stored = conn.execute(
            dialect_insert(inbound_webhooks)
            .values(provider=provider, dedupe_key=dedupe_key, raw_body=raw_body, signature_valid=True,
                    provider_order_id=provider_order_id, received_at=now)
            .on_conflict_do_nothing(index_elements=["provider", "dedupe_key"])
            .returning(inbound_webhooks.c.id)).first()
    return stored is not None
