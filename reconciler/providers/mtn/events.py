"""What a shop hears about its MTN order: one event per final outcome, sent to the order's notify_url."""
from __future__ import annotations

from typing import Any, Mapping

from reconciler.engine.events import NOTIFY, Event

COMPLETED, FAILED, REVERSED, REJECTED, DEAD = ("order.completed", "order.failed", "order.reversed",
                                               "order.rejected", "order.dead")


def customer_events(order: Mapping[str, Any], event_type: str, status: str, **data: Any) -> tuple[Event, ...]:
    """None when the shop gave no notify_url: the status in mtn_orders is then all it reads."""
    if not order["notify_url"]:
        return ()
    return (Event(event_type, NOTIFY, order["notify_url"], order["shop_order_id"], {
        "shop_order_id": order["shop_order_id"], "status": status, "size_gb": order["size_gb"],
        "network": order["network"], **{k: v for k, v in data.items() if v is not None}}),)
