"""One order's whole story, in time order, for `reconciler order show`: its transitions (status_history), the
calls made to its provider for it (api_calls), the provider webhooks about it (inbound_webhooks) and the
events sent about it with every delivery attempt (webhook_deliveries, webhook_attempts).

A provider finds its order by reference (OrderRecord); everything after that is the same for every outbox.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from sqlalchemy import Engine, select

from reconciler.engine.logs import one_line
from reconciler.engine.schema import api_calls, inbound_webhooks, status_history, webhook_attempts, webhook_deliveries

EXCERPT_CHARS = 300
TRANSITION, PROVIDER_CALL, WEBHOOK_IN, EVENT = "transition", "provider_call", "webhook_in", "event"
_SECRET_QUERY = re.compile(r"([?&][^=&]*(?:token|secret|key|password|code)[^=&]*=)[^&]*", re.IGNORECASE)


@dataclass(frozen=True)
class OrderRecord:
    """An order as its provider found it by reference: where its story is filed, and what to show of it."""

    provider: str
    table: str
    row_id: int
    order_ref: str                  # what events name it by (webhook_deliveries.order_ref)
    provider_order_id: str | None   # what the provider's webhooks name it by
    summary: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoryEntry:
    at: datetime
    kind: str                       # TRANSITION, PROVIDER_CALL, WEBHOOK_IN or EVENT
    details: Mapping[str, Any]


def order_story(engine: Engine, order: OrderRecord) -> list[StoryEntry]:
    """Everything recorded about the order, oldest first (at equal times: transitions, calls, webhooks, events)."""
    entries: list[StoryEntry] = []
    with engine.connect() as conn:
        h = status_history
        for row in conn.execute(select(h).where(h.c.table_name == order.table, h.c.row_id == order.row_id)
                                .order_by(h.c.id)).mappings():
            entries.append(StoryEntry(row["created_at"], TRANSITION, {
                "from": row["from_status"], "to": row["to_status"], "cause": row["cause"], "worker": row["worker_id"]}))
        c = api_calls
        for row in conn.execute(select(c).where(c.c.order_table == order.table, c.c.order_id == order.row_id)
                                .order_by(c.c.id)).mappings():
            entries.append(StoryEntry(row["created_at"], PROVIDER_CALL, {
                "provider": row["provider"], "method": row["method"], "url": redact_url(row["url"]),
                "status_code": row["status_code"], "latency_ms": row["duration_ms"], "error": row["error"],
                "response_excerpt": excerpt(row["response_body"])}))
        if order.provider_order_id:
            w = inbound_webhooks
            for row in conn.execute(select(w).where(w.c.provider == order.provider,
                                                    w.c.provider_order_id == order.provider_order_id)
                                    .order_by(w.c.id)).mappings():
                entries.append(StoryEntry(row["received_at"], WEBHOOK_IN, {
                    "id": row["id"], "signature_valid": row["signature_valid"], "processed_at": row["processed_at"],
                    "process_error": row["process_error"], "body_excerpt": excerpt(row["raw_body"])}))
        d, a = webhook_deliveries, webhook_attempts
        deliveries = conn.execute(select(d).where(d.c.order_table == order.table, d.c.order_ref == order.order_ref)
                                  .order_by(d.c.sequence)).mappings().all()
        attempts: dict[int, list[dict[str, Any]]] = {}
        for row in conn.execute(select(a).where(a.c.delivery_id.in_([r["id"] for r in deliveries]))
                                .order_by(a.c.id)).mappings():
            attempts.setdefault(row["delivery_id"], []).append({
                "attempt": row["attempt"], "at": row["attempted_at"], "status_code": row["status_code"],
                "latency_ms": row["latency_ms"], "error_class": row["error_class"],
                "response_excerpt": excerpt(row["response_excerpt"])})
        for row in deliveries:
            entries.append(StoryEntry(row["occurred_at"], EVENT, {
                "event_id": row["event_id"], "type": row["event_type"], "sequence": row["sequence"],
                "endpoint_url": redact_url(row["endpoint_url"]), "status": row["status"],
                "delivered_at": row["delivered_at"], "attempts": attempts.get(row["id"], [])}))
    order_of_kinds = (TRANSITION, PROVIDER_CALL, WEBHOOK_IN, EVENT)
    return sorted(entries, key=lambda e: (e.at, order_of_kinds.index(e.kind)))


def excerpt(text: str | None) -> str | None:
    """The start of a body on one line."""
    if text is None:
        return None
    cut = one_line(text, EXCERPT_CHARS + 1)
    return cut if len(cut) <= EXCERPT_CHARS else cut[:EXCERPT_CHARS] + "…"


def redact_url(url: str) -> str:
    """A URL with the values of token-, secret- and key-like query parameters hidden."""
    return _SECRET_QUERY.sub(r"\1<redacted>", url)
