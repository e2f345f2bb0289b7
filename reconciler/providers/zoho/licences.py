"""Licences (the subscriptions table): provisioned by a fulfilled order, extended by a renewal once per order,
expired by the 03:00 check. All the SQL of a licence's life is here.

Months are calendar months in UTC at the same time of day; a day the target month lacks becomes its last
day (31 January + 1 month = 28 or 29 February, 29 February 2028 + 12 months = 28 February 2029). A renewal
counts from the licence's current expiry, so a licence expiring on the 31st and renewed month by month
drifts to the 28th/29th/30th and stays there.
"""
from __future__ import annotations

import calendar
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from sqlalchemy import ColumnElement, Connection, Engine, RowMapping, and_, exists, func, select, update

from reconciler.config import TENURES
from reconciler.engine.db import insert_ignoring_conflicts
from reconciler.engine.schema import COMPLETED, licence_extensions, licence_reminders, subscriptions, zoho_orders

ACTIVE, EXPIRED, REVOKED = "active", "expired", "revoked"
SUBSCRIPTION_STATUSES = (ACTIVE, EXPIRED, REVOKED)
ACTIVE_SQL = f"status = '{ACTIVE}'"  # the predicate of subscriptions_active_idx
BY_FULFILMENT, BY_REPAIR = "fulfilment", "repair"  # licence_extensions.cause

# T2M-XXXX-XXXX-XXXX from 30 letters and digits nobody confuses when reading them out (no 0/O, 1/I/L, U):
# 12 characters, 59 bits: unguessable, and unique in practice (a unique index guards the rest).
_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"


@dataclass(frozen=True)
class Licence:
    """What the fulfilment writes onto the order and tells the partner."""

    subscription_id: int
    activation_reference: str
    expiry_date: datetime
    renewed: bool  # True: an existing active licence was extended by this order


def add_months(moment: datetime, months: int) -> datetime:
    """`moment` plus calendar months, the day clamped to the target month's last day (see the module doc)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def new_activation_reference() -> str:
    chars = "".join(secrets.choice(_ALPHABET) for _ in range(12))
    return f"T2M-{chars[:4]}-{chars[4:8]}-{chars[8:]}"


def provision(conn: Connection, order: Mapping[str, Any], months: int, now: datetime) -> Licence:
    """In the fulfilment's transaction: extend the customer's active licence of this product by `months` from
    its current expiry (a renewal), else start a new licence now. Calling it again for the same order returns
    the same Licence and changes nothing. `order` is a zoho_orders row (id, customer_id, product_id, tenure).

    A licence past its expiry that the 03:00 check has not marked yet is expired here, not renewed."""
    if months <= 0:
        raise ValueError(f"order {order['id']}: a licence needs months > 0, got {months}")
    if not order["customer_id"] or not order["product_id"]:
        raise ValueError(f"order {order['id']}: a licence needs a customer_id and a product_id")
    done = _provisioned(conn, order["id"])
    if done is not None:
        return done
    for _ in range(2):  # the second pass: a racing order started the licence first, so this one renews it
        current = _active(conn, order["customer_id"], order["product_id"])
        if current is not None and current["zoho_order_id"] == order["id"]:  # this order, racing itself
            return _provisioned(conn, order["id"])
        if current is not None and current["expires_at"] > now:
            return _extend(conn, current, order["id"], months, BY_FULFILMENT, now)
        if current is not None:
            conn.execute(update(subscriptions).where(subscriptions.c.id == current["id"])
                         .values(status=EXPIRED, updated_at=now))
        reference, expiry = new_activation_reference(), add_months(now, months)
        started = conn.scalar(
            insert_ignoring_conflicts(conn.dialect.name, subscriptions, ["customer_id", "product_id"], ACTIVE_SQL)
            .values(zoho_order_id=order["id"], customer_id=order["customer_id"], product_id=order["product_id"],
                    tenure=order["tenure"], activation_reference=reference, starts_at=now, expires_at=expiry,
                    status=ACTIVE, created_at=now, updated_at=now)
            .returning(subscriptions.c.id))
        if started is not None:
            _mark_order(conn, order["id"], started, renewal=False, now=now)
            return Licence(started, reference, expiry, renewed=False)
    raise RuntimeError(f"order {order['id']}: no active licence to renew and none could be started")


def _provisioned(conn: Connection, order_id: int) -> Licence | None:
    """The Licence this order already provisioned, as it was then (a later renewal moves the expiry on)."""
    s, x = subscriptions, licence_extensions
    extended = conn.execute(select(s.c.id, s.c.activation_reference, x.c.new_expiry)
                            .join(x, x.c.subscription_id == s.c.id).where(x.c.zoho_order_id == order_id)).first()
    if extended is not None:
        return Licence(extended.id, extended.activation_reference, extended.new_expiry, renewed=True)
    started = conn.execute(select(s.c.id, s.c.activation_reference, s.c.expires_at)
                           .where(s.c.zoho_order_id == order_id)).first()
    if started is None:
        return None
    first_renewal = conn.scalar(select(x.c.previous_expiry).where(x.c.subscription_id == started.id)
                                .order_by(x.c.id).limit(1))
    return Licence(started.id, started.activation_reference, first_renewal or started.expires_at, renewed=False)


def _active(conn: Connection, customer_id: str, product_id: str) -> RowMapping | None:
    """The customer's active licence of the product, locked until the transaction ends (PostgreSQL; SQLite's
    BEGIN IMMEDIATE already serialises writers), so racing renewals extend one after the other."""
    s = subscriptions
    return conn.execute(select(s).where(s.c.customer_id == customer_id, s.c.product_id == product_id,
                                        s.c.status == ACTIVE).with_for_update()).mappings().first()


def _extend(conn: Connection, licence: Mapping[str, Any], order_id: int, months: int, cause: str,
            now: datetime) -> Licence:
    """Extend `licence` (locked) by `months` from its current expiry for `order_id`, once: the unique
    licence_extensions row per order decides."""
    new_expiry = add_months(licence["expires_at"], months)
    recorded = conn.scalar(
        insert_ignoring_conflicts(conn.dialect.name, licence_extensions, ["zoho_order_id"])
        .values(subscription_id=licence["id"], zoho_order_id=order_id, months=months,
                previous_expiry=licence["expires_at"], new_expiry=new_expiry, cause=cause, extended_at=now)
        .returning(licence_extensions.c.id))
    if recorded is None:  # the same order, extended meanwhile by another transaction
        return _provisioned(conn, order_id)
    conn.execute(update(subscriptions).where(subscriptions.c.id == licence["id"]).values(
        expires_at=new_expiry, status=ACTIVE if new_expiry > now else EXPIRED, updated_at=now))
    _mark_order(conn, order_id, licence["id"], renewal=True, now=now)
    return Licence(licence["id"], licence["activation_reference"], new_expiry, renewed=True)


def _mark_order(conn: Connection, order_id: int, subscription_id: int, renewal: bool, now: datetime) -> None:
    conn.execute(update(zoho_orders).where(zoho_orders.c.id == order_id)
                 .values(subscription_id=subscription_id, renewal=renewal, updated_at=now))


def expire_past(engine: Engine, now: datetime) -> int:
    """Mark active licences whose expiry has passed `expired`; how many."""
    with engine.begin() as conn:
        return conn.execute(update(subscriptions)
                            .where(subscriptions.c.status == ACTIVE, subscriptions.c.expires_at <= now)
                            .values(status=EXPIRED, updated_at=now)).rowcount


def renewals_missing_extension(engine: Engine) -> list[RowMapping]:
    """Orders completed as renewals with no licence_extensions row: their customer paid for months the licence
    does not have yet."""
    o, x = zoho_orders, licence_extensions
    with engine.connect() as conn:
        return list(conn.execute(select(o).where(
            o.c.renewal, o.c.status == COMPLETED, ~exists().where(x.c.zoho_order_id == o.c.id)
        ).order_by(o.c.id)).mappings())


def repair_extension(engine: Engine, order: Mapping[str, Any], now: datetime) -> Licence | None:
    """Apply a completed renewal's missing extension to the licence it renewed (its subscription_id, else the
    customer's active licence of the product), from its current expiry; None when there is no such licence or
    it was revoked."""
    s = subscriptions
    with engine.begin() as conn:
        if order["subscription_id"] is not None:
            licence = conn.execute(select(s).where(s.c.id == order["subscription_id"]).with_for_update()
                                   ).mappings().first()
        else:
            licence = _active(conn, order["customer_id"], order["product_id"])
        if licence is None or licence["status"] == REVOKED:  # a revoked licence stays revoked: a person decides
            return None
        return _extend(conn, licence, order["id"], TENURES[order["tenure"]], BY_REPAIR, now)


def subscription_counts(engine: Engine) -> dict[str, int]:
    """Licences by status, every status present (0 when none)."""
    with engine.connect() as conn:
        found = dict(conn.execute(select(subscriptions.c.status, func.count()).group_by(subscriptions.c.status)).all())
    return {status: found.get(status, 0) for status in SUBSCRIPTION_STATUSES}


def find_subscriptions(engine: Engine, *, status: str | None = None, expiring_before: datetime | None = None,
                       after: datetime | None = None, limit: int | None = None) -> list[RowMapping]:
    """Licences soonest expiring first, each with its customer's email and the latest order that started or
    extended it (`order_id`, `tenure` of that order) and when the reminder for its current expiry was sent."""
    s, r = subscriptions, licence_reminders
    o = zoho_orders
    query = (select(s.c.id, s.c.activation_reference, s.c.customer_id, s.c.product_id, s.c.status, s.c.starts_at,
                    s.c.expires_at, o.c.order_id, o.c.tenure, o.c.customer_email, r.c.sent_at.label("reminded_at"))
             .select_from(s).join(o, o.c.id == latest_order_id())
             .outerjoin(r, and_(r.c.subscription_id == s.c.id, r.c.expires_at == s.c.expires_at))
             .order_by(s.c.expires_at, s.c.id))
    if status is not None:
        query = query.where(s.c.status == status)
    if after is not None:
        query = query.where(s.c.expires_at > after)
    if expiring_before is not None:
        query = query.where(s.c.expires_at < expiring_before)
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        return list(conn.execute(query).mappings())


def latest_order_id() -> ColumnElement[int]:
    """For a subscriptions row: the id of the latest order behind it, its newest extension's order, else the
    order that started it."""
    x = licence_extensions
    renewing = (select(x.c.zoho_order_id).where(x.c.subscription_id == subscriptions.c.id).order_by(x.c.id.desc())
                .limit(1).correlate(subscriptions).scalar_subquery())
    return func.coalesce(renewing, subscriptions.c.zoho_order_id)
