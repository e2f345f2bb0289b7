"""The SQL of the MTN flow beyond the generic outbox: recipient locks and what reconciliation reads."""
from __future__ import annotations

import itertools
from contextlib import suppress
from datetime import datetime
from typing import Iterable, Mapping, Sequence

from sqlalchemy import Connection, Engine, RowMapping, bindparam, select, text, update
from sqlalchemy.exc import IntegrityError

from reconciler.engine.drivers.common import IN_FLIGHT_SQL
from reconciler.engine.drivers.postgres import hot_path_engine, run_on_live_connection
from reconciler.engine.outbox import Outcome
from reconciler.engine.schema import (
    COMPLETED, IN_DOUBT, IN_FLIGHT, SUBMITTED, UTCDateTime, inbound_webhooks, mtn_orders,
)
from reconciler.engine.transitions import move

UNSETTLED = (IN_FLIGHT, IN_DOUBT, SUBMITTED)  # the order may be at the reseller
_CHUNK = 500


def recipient_key(phone: str, size_gb: int) -> str:
    return f"{phone}:{size_gb}"


def lock_recipients(engine: Engine, worker: str, wanted: Mapping[int, str], now: datetime) -> set[int]:
    """Give each order (id -> recipient_key) the lock of its recipient and size, first come first served;
    the ids that got it. Fenced on this worker's lease. A lock left by a settled order is taken over.
    submitted_at is set now too: should this worker die before it can say, the order went out about now."""
    if not wanted:
        return set()
    first: dict[str, int] = {}
    for row_id, key in wanted.items():  # first come first served within the batch
        first.setdefault(key, row_id)
    if engine.dialect.name == "postgresql":
        with suppress(IntegrityError):  # a stale lock, or a replica took a key meanwhile: see who holds what
            return _lock_in_one_statement(engine, worker, first, now)
    return _lock_after_reading_holders(engine, worker, first, now)


def _lock_in_one_statement(engine: Engine, worker: str, first: Mapping[str, int], now: datetime) -> set[int]:
    """PostgreSQL, one round trip: take the keys no unsettled order holds. A key still held by a settled order
    (a stale lock) or taken by a replica meanwhile fails it with IntegrityError. Run again after a lost reply,
    it takes the same rows once more (a row's own lock does not block it)."""
    params = {"ids": list(first.values()), "keys": list(first), "phones": [k.rsplit(":", 1)[0] for k in first],
              "worker": worker, "now": now}
    return run_on_live_connection(hot_path_engine(engine),
                                  lambda conn, _again: set(conn.scalars(_LOCK_ALL_PG, params)))


def _lock_after_reading_holders(engine: Engine, worker: str, first: Mapping[str, int], now: datetime) -> set[int]:
    """Any database, in one transaction: read who holds the keys, free stale locks, take the free ones."""
    t = mtn_orders
    with engine.begin() as conn:
        holders = dict(conn.execute(select(t.c.recipient_lock, t.c.status).where(
            t.c.recipient_lock.in_(list(first)))).all())
        stale = [key for key, status in holders.items() if status not in UNSETTLED]
        if stale:
            conn.execute(update(t).where(t.c.recipient_lock.in_(stale), t.c.status.not_in(UNSETTLED))
                         .values(recipient_lock=None))
        free = {row_id: key for key, row_id in first.items() if key not in holders or key in stale}
        if not free:
            return set()
        lock = (update(t).where(t.c.id == bindparam("row_id"), t.c.status == IN_FLIGHT_SQL, t.c.locked_by == worker)
                .values(recipient_lock=bindparam("key"), normalized_phone=bindparam("phone"), submitted_at=now))
        params = [{"row_id": row_id, "key": key, "phone": key.rsplit(":", 1)[0]} for row_id, key in free.items()]
        try:
            with conn.begin_nested():
                conn.execute(lock, params)
        except IntegrityError:  # PostgreSQL: a replica took a key after the read (SQLite has one writer)
            for one in params:
                try:
                    with conn.begin_nested():
                        conn.execute(lock, one)
                except IntegrityError:
                    pass  # this one's recipient is taken: the row is not locked and waits
        return set(conn.scalars(select(t.c.id).where(t.c.id.in_(list(free)), t.c.status == IN_FLIGHT_SQL,
                                                     t.c.locked_by == worker, t.c.recipient_lock.is_not(None))))


_UNSETTLED_SQL = ", ".join(f"'{status}'" for status in UNSETTLED)
_LOCK_ALL_PG = text(f"""
    UPDATE mtn_orders SET recipient_lock = wanted.key, normalized_phone = wanted.phone, submitted_at = :now
    FROM unnest(CAST(:ids AS BIGINT[]), CAST(:keys AS TEXT[]), CAST(:phones AS TEXT[])) AS wanted(id, key, phone)
    WHERE mtn_orders.id = wanted.id AND mtn_orders.status = '{IN_FLIGHT}' AND mtn_orders.locked_by = :worker
      AND NOT EXISTS (SELECT 1 FROM mtn_orders held WHERE held.recipient_lock = wanted.key
                      AND held.status IN ({_UNSETTLED_SQL}) AND held.id <> wanted.id)
    RETURNING mtn_orders.id
""").bindparams(bindparam("now", type_=UTCDateTime))


def unlock_recipients(engine: Engine, worker: str, row_ids: Sequence[int]) -> None:
    """Free the locks of orders this worker holds but never sent (handed back unstarted)."""
    if row_ids:
        t = mtn_orders
        with engine.begin() as conn:
            conn.execute(update(t).where(t.c.id.in_(list(row_ids)), t.c.status == IN_FLIGHT_SQL,
                                         t.c.locked_by == worker).values(recipient_lock=None))


def unsettled_orders(engine: Engine) -> list[RowMapping]:
    """Orders in doubt or submitted, oldest attempt first."""
    t = mtn_orders
    with engine.connect() as conn:
        return list(conn.execute(select(t).where(t.c.status.in_([IN_DOUBT, SUBMITTED]))
                                 .order_by(t.c.submitted_at)).mappings())


def watched_orders(engine: Engine, provider_ids: Iterable[str], completed_since: datetime) -> list[RowMapping]:
    """Of these reseller orders, ours that completed inside the reversal watch window."""
    t = mtn_orders
    found: list[RowMapping] = []
    with engine.connect() as conn:
        for chunk in _chunks(provider_ids):
            found += conn.execute(select(t).where(t.c.provider_order_id.in_(chunk), t.c.status == COMPLETED,
                                                  t.c.completed_at >= completed_since)).mappings().all()
    return found


def owned_provider_ids(engine: Engine, provider_ids: Iterable[str]) -> set[str]:
    """Which of these reseller order ids already belong to one of our orders."""
    t = mtn_orders
    owned: set[str] = set()
    with engine.connect() as conn:
        for chunk in _chunks(provider_ids):
            owned.update(conn.scalars(select(t.c.provider_order_id).where(t.c.provider_order_id.in_(chunk))))
    return owned


def applicable_webhooks(engine: Engine, provider: str, limit: int) -> list[tuple[int, str, RowMapping]]:
    """Unprocessed webhooks whose order we know, oldest first, with that order. An event for an order not
    known yet (not sent, or still in doubt) waits here until its order gets the provider's id."""
    t, w = mtn_orders, inbound_webhooks
    with engine.connect() as conn:
        rows = conn.execute(
            select(w.c.id.label("event_row_id"), w.c.raw_body, t)
            .join(t, t.c.provider_order_id == w.c.provider_order_id)
            .where(w.c.provider == provider, w.c.processed_at.is_(None))
            .order_by(w.c.received_at, w.c.id).limit(limit)).mappings().all()
    return [(row["event_row_id"], row["raw_body"], row) for row in rows]


def expire_orphan_webhooks(engine: Engine, provider: str, received_before: datetime, now: datetime) -> int:
    """Close events that waited past `received_before` for an order we never had (placed outside the
    daemon, say), so they stop being read every cycle. They stay in the table, marked with why."""
    t, w = mtn_orders, inbound_webhooks
    known = select(t.c.id).where(t.c.provider_order_id == w.c.provider_order_id).exists()
    with engine.begin() as conn:
        return conn.execute(update(w).where(w.c.provider == provider, w.c.processed_at.is_(None),
                                            w.c.received_at < received_before, ~known)
                            .values(processed_at=now, process_error="no order of ours has this provider id")
                            ).rowcount


def settle_order(engine: Engine, order: Mapping, outcome: Outcome, actor: str, now: datetime) -> bool:
    """Write what reconciliation decided, if the order is still as it was read (compare-and-set on its
    status); False when another writer (a webhook, a replica adopting that history order) came first."""
    try:
        with engine.begin() as conn:
            return move(conn, mtn_orders, outcome, order["status"], actor, now)
    except IntegrityError:  # another replica adopted that history order first
        return False


def apply_webhook(engine: Engine, event_row_id: int, order: Mapping, change: Outcome | None, actor: str,
                  now: datetime) -> bool:
    """Write what a stored webhook says of its order and mark the event done, in one transaction; False
    (the event still pending) when the order moved meanwhile."""
    with engine.begin() as conn:
        if change is not None and not move(conn, mtn_orders, change, order["status"], actor, now):
            return False  # move wrote nothing
        _mark_processed(conn, event_row_id, now)
    return True


def close_webhook(engine: Engine, event_row_id: int, error: str, now: datetime) -> None:
    """Close a stored webhook that cannot be applied, with why, so the events behind it go on."""
    with engine.begin() as conn:
        _mark_processed(conn, event_row_id, now, error)


def _mark_processed(conn: Connection, event_row_id: int, now: datetime, error: str | None = None) -> None:
    conn.execute(update(inbound_webhooks).where(inbound_webhooks.c.id == event_row_id)
                 .values(processed_at=now, process_error=error))


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    iterator = iter(values)
    while chunk := list(itertools.islice(iterator, _CHUNK)):
        yield chunk

