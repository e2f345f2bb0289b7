"""What T2Mobile hears at partner.webhook_url: one event type per thing that happened to an order or a licence."""
from __future__ import annotations

from enum import StrEnum
from typing import Any, Mapping

from reconciler.config import Config
from reconciler.engine.events import PARTNER, Event


class PartnerEvent(StrEnum):
    """The partner's event types (not order statuses: a renewal is a completed order too)."""

    ORDER_FULFILLED = "ORDER_FULFILLED"
    ORDER_FAILED = "ORDER_FAILED"
    EXPIRY_REMINDER = "EXPIRY_REMINDER"
    SUBSCRIPTION_RENEWED = "SUBSCRIPTION_RENEWED"


def partner_event(config: Config, event_type: PartnerEvent, order_id: str, data: Mapping[str, Any]) -> Event:
    """An event for T2Mobile about its order `order_id` (the T2Mobile order id), signed with partner.webhook_secret."""
    return Event(event_type, PARTNER, config.partner.webhook_url, order_id, data)
