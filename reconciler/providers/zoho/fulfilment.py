"""What T2Mobile is told about its order, and the fulfilment itself: the licence provisioned and the partner's
events queued in the very transaction that completes the order (the outbox's finish step), so a licence never
exists without its completed order and its ORDER_FULFILLED, and a renewal never without its SUBSCRIPTION_RENEWED.

A renewal is an order too: T2Mobile placed it and waits for its outcome, so it hears ORDER_FULFILLED like any
order (the licence's activation reference, the new expiry), followed by SUBSCRIPTION_RENEWED, which tells it that
an existing licence was extended rather than a new one started.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from sqlalchemy import Connection

from reconciler.config import Config
from reconciler.engine.events import Event
from reconciler.engine.outbox import Completion, FinishStep
from reconciler.providers.zoho.events import PartnerEvent, partner_event
from reconciler.providers.zoho.licences import provision

# Zoho's status words for a sales order that matter here (any other: open or further along, e.g. closed).
DRAFT, VOID = "draft", "void"


def fulfilment(config: Config, order: Mapping[str, Any], salesorder_id: str, months: int) -> FinishStep:
    """The finish step of an order whose sales order `salesorder_id` is open: provision its licence (new, or the
    customer's active one extended), and queue the partner's events with it."""
    def finish(conn: Connection, now: datetime) -> Completion:
        licence = provision(conn, order, months, now)
        data = {"orderId": order["order_id"], "activationReference": licence.activation_reference,
                "salesOrderId": salesorder_id, "expiryDate": licence.expiry_date.isoformat()}
        events = [partner_event(config, PartnerEvent.ORDER_FULFILLED, order["order_id"], data)]
        if licence.renewed:
            events.append(partner_event(config, PartnerEvent.SUBSCRIPTION_RENEWED, order["order_id"], {
                **data, "customerId": order["customer_id"], "productId": order["product_id"],
                "tenure": order["tenure"]}))
        return Completion({"activation_reference": licence.activation_reference, "expiry_date": licence.expiry_date,
                           "renewal": licence.renewed, "completed_at": now}, tuple(events))
    return finish


def order_failed(config: Config, order: Mapping[str, Any], reason: str, code: str) -> tuple[Event, ...]:
    """ORDER_FAILED: `reason` for a person, `code` a stable word (the reject_reason, or what Zoho said)."""
    return (partner_event(config, PartnerEvent.ORDER_FAILED, order["order_id"],
                          {"orderId": order["order_id"], "reason": reason, "code": code}),)
