"""One INFO line per step of a T2Mobile order's life (rejected, in doubt, queued again, completed, renewed,
failed, dead), logged by whoever wrote the step once the write succeeded (the submit job, and the engine's lease
rescuer through the outbox policy's on_rescued). The line names the T2Mobile order id; the customer's e-mail
and phone are masked, here and in any Zoho message quoted."""
from __future__ import annotations

import logging
from typing import Any, Mapping

from reconciler.engine.logs import mask_email, mask_personal, mask_phone
from reconciler.engine.outbox import Outcome
from reconciler.engine.schema import COMPLETED, DEAD, FAILED, IN_DOUBT, QUEUED, REJECTED

log = logging.getLogger(__name__)
_STEPS = {IN_DOUBT: "in doubt", COMPLETED: "completed", FAILED: "failed", REJECTED: "rejected", DEAD: "dead"}
QUEUED_AGAIN = "in_doubt_grace_over"  # the cause of an in-doubt order queued again to search and adopt


def log_step(order: Mapping[str, Any], outcome: Outcome) -> None:
    """Log the step `outcome` (already written, with what its finish step added) took `order` (the row as read
    before it); retries and deferrals are not steps."""
    step = _step(outcome)
    if step is None:
        return
    fields = {**order, **outcome.fields}
    details = [f"customer {mask_email(order.get('customer_email'))}"]
    if order.get("customer_phone"):
        details.append(f"phone {mask_phone(order['customer_phone'])}")
    details.append(f"{order.get('product_id')} {order.get('tenure')}")
    if fields.get("zoho_salesorder_id"):
        details.append(f"sales order {fields['zoho_salesorder_id']}")
    if outcome.status == COMPLETED and fields.get("activation_reference"):
        details.append(f"licence {fields['activation_reference']} until {fields['expiry_date']:%Y-%m-%d}")
    details.append(f"cause {outcome.cause}")
    error = outcome.fields.get("last_error") if outcome.status != COMPLETED else None
    log.info("Zoho order %s %s (%s)%s", order["order_id"], step, ", ".join(details),
             f": {mask_personal(error)}" if error else "",
             extra={"order_ref": order["order_id"], "order_table": "zoho_orders", "order_id": order["id"],
                    "step": step, "from_status": order["status"], "cause": outcome.cause})


def _step(outcome: Outcome) -> str | None:
    if outcome.status == QUEUED:
        return "queued again" if outcome.cause == QUEUED_AGAIN else None
    if outcome.status == COMPLETED and outcome.fields.get("renewal"):
        return "completed (renewal)"
    return _STEPS.get(outcome.status)
