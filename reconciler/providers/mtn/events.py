"""What a shop hears about its MTN order: one event per final outcome, sent to the order's notify_url."""
from __future__ import annotations

from enum import StrEnum
from typing import Any, Mapping

from reconciler.engine.events import NOTIFY, Event


class ShopEvent(StrEnum):
    """The event types a shop hears at an order's notify_url (not order statuses: `order.reversed` comes with
    the status `failed`)."""

    ORDER_COMPLETED = "order.completed"
    ORDER_FAILED = "order.failed"
    ORDER_REVERSED = "order.reversed"
    ORDER_REJECTED = "order.rejected"
    ORDER_DEAD = "order.dead"


def customer_events(order: Mapping[str, Any], event_type: ShopEvent, status: str, **data: Any) -> tuple[Event, ...]:
    """None when the shop gave no notify_url: the status in mtn_orders is then all it reads."""
    if not order["notify_url"]:
        return ()
    return (Event(event_type, NOTIFY, order["notify_url"], order["shop_order_id"], {
        "shop_order_id": order["shop_order_id"], "status": status, "size_gb": order["size_gb"],
        "network": order["network"], **{k: v for k, v in data.items() if v is not None}}),)
