"""The 03:00 check (partner.timezone): a renewal completed without its extension gets it now, and licences past
their expiry become `expired` (no event: the partner heard SUBSCRIPTION_RENEWED with the fulfilment, and
never hears it twice).

Both steps are idempotent, so a retried or taken-over slot just finds less to do.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from reconciler.config import Config
from reconciler.engine.clock import Clock
from reconciler.engine.db import is_database_unavailable
from reconciler.engine.job import Job, JobContext
from reconciler.engine.schedules import DailyAt
from reconciler.providers.zoho import licence_metrics
from reconciler.providers.zoho.licences import expire_past, renewals_missing_extension, repair_extension

log = logging.getLogger(__name__)

CHECK_TIME = "03:00"
MAX_LATENESS_SECONDS = 20 * 3600  # late is harmless here: provision() never renews a licence past its expiry


def job(config: Config) -> Job:
    return Job("renewal_check", None, run,
               daily_at=DailyAt.parse(CHECK_TIME, config.partner.timezone, MAX_LATENESS_SECONDS))


@dataclass(frozen=True)
class RenewalCheck:
    expired: int
    repaired: int
    unrepaired: int  # no licence to extend, or the extension failed: logged, for a person


def run(ctx: JobContext, slot_at: datetime) -> None:
    check_renewals(ctx.engine, ctx.config, ctx.clock)


def check_renewals(engine: Engine, config: Config, clock: Clock) -> RenewalCheck:
    repaired = unrepaired = 0
    for order in renewals_missing_extension(engine):
        try:
            licence = repair_extension(engine, order, clock())
        except Exception as exc:
            if is_database_unavailable(exc):
                raise
            log.exception("order %s: the missing extension of its renewal could not be applied", order["order_id"])
            licence_metrics.LICENCE_EXTENSIONS_REPAIRED.labels("error").inc()
            unrepaired += 1
            continue
        if licence is None:
            log.error("order %s: completed as a renewal of %s %s, but there is no licence to extend (none, or "
                      "revoked); a person must look", order["order_id"], order["customer_id"], order["product_id"])
            licence_metrics.LICENCE_EXTENSIONS_REPAIRED.labels("no_licence").inc()
            unrepaired += 1
            continue
        repaired += 1
        licence_metrics.LICENCE_EXTENSIONS_REPAIRED.labels("repaired").inc()
        log.warning("order %s: its renewal's missing extension applied: licence %s now expires %s",
                    order["order_id"], licence.activation_reference, licence.expiry_date.isoformat())
    expired = expire_past(engine, clock())  # after the repairs: a repaired licence may run on
    licence_metrics.refresh(engine, config, clock())
    log.info("renewal check: %d licences expired, %d renewals repaired, %d not repairable", expired, repaired,
             unrepaired)
    return RenewalCheck(expired, repaired, unrepaired)
