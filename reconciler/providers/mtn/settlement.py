"""What the reseller's word does to one of our orders, as data (an Outcome) or nothing.

Statuses only move forward: a processing report never reopens a settled order, and a failed order
stays failed. The one way back is a reversal: a completed order reported failed within the watch
window becomes failed and the shop hears `order.reversed`. The same rules serve webhooks and history.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping

from reconciler.engine.outbox import Outcome
from reconciler.engine.schema import COMPLETED, FAILED, IN_DOUBT, SUBMITTED
from reconciler.providers.mtn.client import ProviderOrder, ResellerStatus
from reconciler.providers.mtn.events import ShopEvent, customer_events

Order = Mapping[str, Any]


def settlement(order: Order, said: ProviderOrder, now: datetime, watch: timedelta, cause: str) -> Outcome | None:
    """The change `said` (the reseller's view of this order's provider order) makes, if any."""
    status = order["status"]
    seen = {"provider_status": said.raw_status, "provider_order_id": said.id}
    if status in (SUBMITTED, IN_DOUBT):
        if said.status == ResellerStatus.DELIVERED:
            return Outcome(order["id"], COMPLETED, cause, {**seen, "completed_at": now, "recipient_lock": None,
                                                           "last_error": None},
                           customer_events(order, ShopEvent.ORDER_COMPLETED, COMPLETED,
                                                      provider_order_id=said.id))
        if said.status == ResellerStatus.FAILED:
            return Outcome(order["id"], FAILED, cause, {**seen, "recipient_lock": None, "last_error": said.message},
                           customer_events(order, ShopEvent.ORDER_FAILED, FAILED, provider_order_id=said.id,
                                                      reason=said.message))
        if status == IN_DOUBT:  # found in history, still processing: it was sent after all
            return Outcome(order["id"], SUBMITTED, cause, {**seen, "last_error": None})
        return None
    if status == COMPLETED and said.status == ResellerStatus.FAILED and order["completed_at"] + watch > now:
        return Outcome(order["id"], FAILED, "reversed", {**seen, "last_error": f"reversed: {said.message}"},
                       customer_events(order, ShopEvent.ORDER_REVERSED, FAILED, provider_order_id=said.id,
                                                  reason=said.message))
    return None


def matches(order: Order, said: ProviderOrder, window: timedelta) -> bool:
    """Could `said` be the order our in-doubt attempt created? Same recipient, size and network, created
    within `window` of the attempt. Safe because at most one of our orders per recipient and size is
    unsettled at a time (recipient_lock)."""
    sent_at = order["submitted_at"]
    return (said.recipient_phone == order["normalized_phone"] and said.size_gb == order["size_gb"]
            and said.network.upper() == (order["network"] or "").upper()
            and sent_at is not None and said.created_at is not None
            and sent_at - window <= said.created_at <= sent_at + window)


def find_matches(order: Order, history: Iterable[ProviderOrder], owned: set[str],
                 window: timedelta) -> list[ProviderOrder]:
    """The history orders no other row owns that match. Only a single one may be adopted: with more,
    the order is left in doubt for a person rather than guessed (and not sent again: it may be one of them)."""
    return [said for said in history if said.id not in owned and matches(order, said, window)]
