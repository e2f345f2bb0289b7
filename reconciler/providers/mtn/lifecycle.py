"""One INFO line per step of an MTN order's life (submitted, in doubt, completed, failed, rejected, dead,
reversed, queued again), logged by whoever wrote the step once the write succeeded (submit, stored
webhooks, reconciliation, and the engine's lease rescuer through the outbox policy's on_rescued). The line
names the shop's reference; the phone is masked, here and in any reseller message quoted."""
from __future__ import annotations

import logging
from typing import Any, Mapping

from reconciler.engine.logs import mask_personal, mask_phone
from reconciler.engine.outbox import Outcome
from reconciler.engine.schema import COMPLETED, DEAD, FAILED, IN_DOUBT, QUEUED, REJECTED, SUBMITTED
from reconciler.providers.mtn.phones import RecipientRejected, normalise_phone

log = logging.getLogger(__name__)
_STEPS = {SUBMITTED: "submitted", IN_DOUBT: "in doubt", COMPLETED: "completed", FAILED: "failed",
          REJECTED: "rejected", DEAD: "dead"}


def log_step(order: Mapping[str, Any], outcome: Outcome) -> None:
    """Log the step `outcome` (already written) took `order` (the row as read before it); retries and
    deferrals are not steps."""
    step = _step(outcome)
    if step is None:
        return
    phone = masked_phone(order)
    details = [f"phone {phone}", f"{order['size_gb']} GB"]
    provider_order_id = outcome.fields.get("provider_order_id") or order.get("provider_order_id")
    if provider_order_id:
        details.append(f"reseller order {provider_order_id}")
    details.append(f"cause {outcome.cause}")
    error = outcome.fields.get("last_error")
    log.info("MTN order %s %s (%s)%s", order["shop_order_id"], step, ", ".join(details),
             f": {mask_personal(error)}" if error else "",
             extra={"order_ref": order["shop_order_id"], "order_table": "mtn_orders", "order_id": order["id"],
                    "step": step, "from_status": order["status"], "cause": outcome.cause, "phone": phone})


def masked_phone(order: Mapping[str, Any]) -> str:
    raw = order.get("normalized_phone") or order["recipient_phone"]
    try:
        return mask_phone(normalise_phone(raw))
    except RecipientRejected:
        return mask_phone(raw)


def _step(outcome: Outcome) -> str | None:
    if outcome.status == FAILED and outcome.cause == "reversed":
        return "reversed"
    if outcome.status == QUEUED:
        return "queued again" if outcome.cause == "not_in_history" else None
    return _STEPS.get(outcome.status)
