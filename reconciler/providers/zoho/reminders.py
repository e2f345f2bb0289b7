"""Expiry reminders: which active licences are due one on a given day, and one reminder per licence and expiry
date, recorded in the transaction of its event (licence_reminders), so a retried run sends nothing twice.

"Within reminder_days" counts calendar days in the partner's time zone: on 10 May, with 7 days, every licence
expiring from now to the end of 17 May (local) is due, and `days_until` is 7 for one expiring on 17 May.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Engine, exists, func, select, update

from reconciler.engine.db import insert_ignoring_conflicts
from reconciler.engine.events import Event, emit_events
from reconciler.engine.schema import licence_reminders, subscriptions, zoho_orders
from reconciler.providers.zoho.licences import ACTIVE, latest_order_id


@dataclass(frozen=True)
class DueReminder:
    subscription_id: int
    activation_reference: str
    expires_at: datetime
    zoho_order_id: int        # the latest order behind the licence (its newest renewal, else the one that started it)
    order_id: str             # that order's T2Mobile order id
    customer_email: str | None
    product_id: str
    tenure: str               # that order's tenure: what the customer paid for last time

    def days_until(self, on: datetime, zone: ZoneInfo) -> int:
        """Calendar days in `zone` from `on` to the expiry (0: it expires later that day)."""
        return (self.expires_at.astimezone(zone).date() - on.astimezone(zone).date()).days


def window_end(on: datetime, zone: ZoneInfo, days: int) -> datetime:
    """The end of the last local day a reminder sent `on` covers: midnight after `on`'s local date + `days`."""
    last: date = on.astimezone(zone).date() + timedelta(days=days + 1)
    return datetime(last.year, last.month, last.day, tzinfo=zone)


def _unreminded(on: datetime, zone: ZoneInfo, days: int, now: datetime) -> tuple[ColumnElement[bool], ...]:
    """Active licences still running at `now`, expiring by the end of the window of `on`, with no reminder for
    their current expiry."""
    s, r = subscriptions, licence_reminders
    return (s.c.status == ACTIVE, s.c.expires_at > now, s.c.expires_at < window_end(on, zone, days),
            ~exists().where(r.c.subscription_id == s.c.id, r.c.expires_at == s.c.expires_at))


def due_reminders(engine: Engine, on: datetime, zone: ZoneInfo, days: int, now: datetime) -> list[DueReminder]:
    """The reminders a run for the day of `on` still has to send, soonest expiry first."""
    s, o = subscriptions, zoho_orders
    query = (select(s.c.id, s.c.activation_reference, s.c.expires_at, o.c.id, o.c.order_id, o.c.customer_email,
                    s.c.product_id, o.c.tenure)
             .select_from(s).join(o, o.c.id == latest_order_id())
             .where(*_unreminded(on, zone, days, now))
             .order_by(s.c.expires_at, s.c.id))
    with engine.connect() as conn:
        return [DueReminder(*row) for row in conn.execute(query)]


def count_unreminded(engine: Engine, zone: ZoneInfo, days: int, now: datetime) -> int:
    """Active licences expiring within `days` of `now` with no reminder for their current expiry yet."""
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(subscriptions).where(*_unreminded(now, zone, days, now)))


def record_reminder(engine: Engine, reminder: DueReminder, event: Event, slot_at: datetime,
                    now: datetime) -> str | None:
    """Queue `event` and its licence_reminders row in one transaction; the event id, or None when this licence
    had its reminder for this expiry already (another run, a replica that took the slot over, a person)."""
    r = licence_reminders
    with engine.begin() as conn:
        if conn.scalar(insert_ignoring_conflicts(conn.dialect.name, r, ["subscription_id", "expires_at"]).values(
                subscription_id=reminder.subscription_id, expires_at=reminder.expires_at,
                zoho_order_id=reminder.zoho_order_id, slot_at=slot_at, sent_at=now).returning(r.c.slot_at)) is None:
            return None
        [event_id] = emit_events(conn, zoho_orders.name, [event], now)
        conn.execute(update(r).where(r.c.subscription_id == reminder.subscription_id,
                                     r.c.expires_at == reminder.expires_at).values(event_id=event_id))
    return event_id
