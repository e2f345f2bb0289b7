"""The three outbox tables with their policies, built once per process start from the config."""
from __future__ import annotations

from sqlalchemy import Engine

from reconciler.engine.clock import Clock, utcnow
from reconciler.config import Config
from reconciler.engine.outbox import Outbox
from reconciler.engine.schema import IN_DOUBT, QUEUED, mtn_orders, webhook_deliveries, zoho_orders


def build_outboxes(config: Config, engine: Engine, worker_id: str, clock: Clock = utcnow) -> dict[str, Outbox]:
    """A rescued order submission becomes in_doubt (it may have reached the provider); a webhook is resent."""
    lease = config.daemon.lease_seconds
    return {
        mtn_orders.name: Outbox(engine, mtn_orders, worker_id, lease_seconds=lease, clock=clock,
                                retry_schedule_seconds=config.mtn.retry_schedule_seconds, rescue_status=IN_DOUBT),
        zoho_orders.name: Outbox(engine, zoho_orders, worker_id, lease_seconds=lease, clock=clock,
                                 retry_schedule_seconds=config.zoho.retry_schedule_seconds, rescue_status=IN_DOUBT),
        webhook_deliveries.name: Outbox(engine, webhook_deliveries, worker_id, lease_seconds=lease, clock=clock,
                                        retry_schedule_seconds=config.partner.retry_schedule_seconds,
                                        rescue_status=QUEUED),
    }
