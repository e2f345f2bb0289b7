"""Forget the partner intake's stored answers once `partner.idempotency_ttl_hours` have passed: claim and
replay already ignore an expired key, so this only keeps the table small. Every replica may run it."""
from __future__ import annotations

import logging

from reconciler.config import Config
from reconciler.engine.job import Job, JobContext
from reconciler.providers.zoho.idempotency import prune_expired

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 3600.0


def job(config: Config) -> Job:
    """For ZohoProvider.jobs."""
    return Job("prune_idempotency_keys", INTERVAL_SECONDS, run)


def run(ctx: JobContext) -> None:
    pruned = prune_expired(ctx.engine, ctx.clock())
    if pruned:
        log.info("forgot %d expired Idempotency-Key answers", pruned)
