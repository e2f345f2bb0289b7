"""The MTN outbox: its table and policy, as the daemon, the CLI and reconciliation share them."""
from __future__ import annotations

from reconciler.config import Config
from reconciler.engine.outbox import OutboxPolicy
from reconciler.engine.schema import IN_DOUBT, mtn_orders
from reconciler.providers.mtn.lifecycle import log_step


def outbox_policy(config: Config) -> OutboxPolicy:
    """The reseller takes no idempotency key: a rescued submission may have reached it, so it is in doubt."""
    return OutboxPolicy(mtn_orders, config.mtn.retry_schedule_seconds, rescue_status=IN_DOUBT, on_rescued=log_step)
