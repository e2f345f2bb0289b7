"""Outgoing events: one webhook_deliveries row each, written in the transaction of the state change.

The body is serialised here, once; those exact bytes are what is signed and sent on every attempt.
Each event carries a stable id (the webhook-id, `msg_...`) and a per-order sequence number, so a
receiver can order events and drop duplicates.
"""
from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping, Sequence

from sqlalchemy import Connection, func, insert, select

from reconciler.engine.schema import webhook_deliveries as deliveries

PARTNER, NOTIFY = "partner", "notify"  # which secret and signature style sign the event


@dataclass(frozen=True)
class Event:
    type: str                 # e.g. order.completed, ORDER_FULFILLED
    audience: str             # PARTNER or NOTIFY
    endpoint_url: str
    order_ref: str            # the order's own key: shop_order_id, T2Mobile order id
    data: Mapping[str, Any] = field(default_factory=dict)


def new_event_id() -> str:
    """msg_ + milliseconds + randomness: unique, and sortable by creation time."""
    return f"msg_{int(time.time() * 1000):012x}{secrets.token_hex(8)}"


def emit_events(conn: Connection, order_table: str, events: Sequence[Event], occurred_at: datetime) -> list[str]:
    """Queue events for delivery inside the caller's transaction; returns their ids."""
    ids = []
    for event in events:
        if event.audience not in (PARTNER, NOTIFY) or not event.endpoint_url:
            raise ValueError(f"event {event.type} for {event.order_ref}: needs an audience and an endpoint")
        sequence = conn.scalar(
            select(func.coalesce(func.max(deliveries.c.sequence), 0) + 1)
            .where(deliveries.c.order_table == order_table, deliveries.c.order_ref == event.order_ref))
        event_id = new_event_id()
        payload = json.dumps({
            "id": event_id, "type": event.type, "timestamp": occurred_at.isoformat(),
            "order_id": event.order_ref, "sequence": sequence, "data": dict(event.data),
        }, separators=(",", ":"), ensure_ascii=False)
        conn.execute(insert(deliveries).values(
            event_id=event_id, event_type=event.type, audience=event.audience, order_table=order_table,
            order_ref=event.order_ref, sequence=sequence, endpoint_url=event.endpoint_url, payload=payload,
            occurred_at=occurred_at, next_attempt_at=occurred_at, created_at=occurred_at, updated_at=occurred_at))
        ids.append(event_id)
    return ids
