"""Take back leases whose owner died or hung: claim the expired leases, hand each back per table policy."""
from __future__ import annotations

import logging

from reconciler.engine.job import JobContext

log = logging.getLogger(__name__)


def run(ctx: JobContext) -> None:
    for outbox in ctx.outboxes.values():
        rescued = outbox.rescue_expired()
        if rescued:
            log.warning("%s: rescued %d expired leases (now %s): ids %s", outbox.name, len(rescued),
                        outbox.rescue_status, rescued[:20])
