"""EXPIRY_REMINDER at 02:00 partner time (partner.timezone): every active licence expiring within
partner.reminder_days hears once per expiry date, with what the customer paid for it last time.

Each reminder is recorded with its event in one transaction (licence_reminders), so a run that dies halfway,
a replica taking the slot over, or a person catching up with `reconciler reminders run` sends only what is
still owed. A reminder that cannot be recorded does not stop the others; the run then fails, and the engine
runs the slot again a minute later.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from reconciler.config import Config
from reconciler.engine.clock import Clock
from reconciler.engine.db import is_database_unavailable
from reconciler.engine.job import Job, JobContext
from reconciler.engine.schedules import DailyAt
from reconciler.providers.zoho import licence_metrics
from reconciler.providers.zoho.events import PartnerEvent, partner_event
from reconciler.providers.zoho.reminders import DueReminder, due_reminders, record_reminder

log = logging.getLogger(__name__)

REMINDER_TIME = "02:00"
MAX_LATENESS_SECONDS = 12 * 3600  # replicas all down at 02:00: still remind that morning, not at night


def job(config: Config) -> Job:
    return Job("expiry_reminders", None, run, daily_at=reminder_time(config))


def reminder_time(config: Config) -> DailyAt:
    return DailyAt.parse(REMINDER_TIME, config.partner.timezone, MAX_LATENESS_SECONDS)


def run(ctx: JobContext, slot_at: datetime) -> None:
    send_reminders(ctx.engine, ctx.config, slot_at, ctx.clock)


@dataclass(frozen=True)
class ReminderRun:
    due: int
    sent: int     # queued now
    already: int  # found recorded meanwhile (another run sent it)


class RemindersFailed(RuntimeError):
    """Some reminders could not be recorded; the others were. Running the slot again sends the rest."""


def send_reminders(engine: Engine, config: Config, slot_at: datetime, clock: Clock) -> ReminderRun:
    """Send the reminders the run of `slot_at` owes (those sent already are not sent again)."""
    zone = ZoneInfo(config.partner.timezone)
    due = due_reminders(engine, slot_at, zone, config.partner.reminder_days, clock())
    sent, failed = 0, []
    for reminder in due:
        event = partner_event(config, PartnerEvent.EXPIRY_REMINDER, reminder.order_id,
                              reminder_payload(config, reminder, slot_at, zone))
        try:
            event_id = record_reminder(engine, reminder, event, slot_at, clock())
        except Exception as exc:
            if is_database_unavailable(exc):
                raise
            log.exception("expiry reminder for licence %s (order %s) not recorded", reminder.activation_reference,
                          reminder.order_id)
            failed.append(reminder.activation_reference)
            continue
        if event_id is not None:
            sent += 1
            licence_metrics.EXPIRY_REMINDERS.inc()
            log.info("order %s: EXPIRY_REMINDER %s queued: licence %s expires %s", reminder.order_id, event_id,
                     reminder.activation_reference, reminder.expires_at.isoformat())
    licence_metrics.refresh(engine, config, clock())
    log.info("expiry reminders of %s: %d due, %d sent, %d sent already, %d failed", slot_at.isoformat(), len(due),
             sent, len(due) - sent - len(failed), len(failed))
    if failed:
        raise RemindersFailed(f"{len(failed)} of {len(due)} expiry reminders not recorded (licences "
                              f"{', '.join(failed[:10])}); the others were")
    return ReminderRun(len(due), sent, len(due) - sent)


def reminder_payload(config: Config, reminder: DueReminder, slot_at: datetime, zone: ZoneInfo) -> dict:
    """The EXPIRY_REMINDER data: the amount is the catalogue's price of the licence's latest product and
    tenure (null, with a warning, when the catalogue no longer sells it)."""
    product = config.partner.products.get(reminder.product_id)
    price = product.prices.get(reminder.tenure) if product is not None else None
    if price is None:
        log.warning("order %s: no price for %s %s in partner.products; EXPIRY_REMINDER sent without an amount",
                    reminder.order_id, reminder.product_id, reminder.tenure)
    return {
        "orderId": reminder.order_id,
        "activationReference": reminder.activation_reference,
        "expiryDate": reminder.expires_at.isoformat(),
        "daysUntilExpiry": reminder.days_until(slot_at, zone),
        "customerEmail": reminder.customer_email,
        "amount": price,
        "currency": product.currency if price is not None else None,
    }
