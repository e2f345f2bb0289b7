"""The Zoho outbox: its table and policy, as the daemon and the CLI share them."""
from __future__ import annotations

from reconciler.config import Config
from reconciler.engine.outbox import OutboxPolicy
from reconciler.engine.schema import IN_DOUBT, zoho_orders
from reconciler.providers.zoho.lifecycle import log_step


def outbox_policy(config: Config) -> OutboxPolicy:
    """A rescued order may have had its sales order created before its worker died: it is in doubt, and its next
    attempt searches Zoho by reference_number before it may create one."""
    return OutboxPolicy(zoho_orders, config.zoho.retry_schedule_seconds, rescue_status=IN_DOUBT, on_rescued=log_step)
