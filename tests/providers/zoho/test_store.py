"""The Zoho flow's own SQL: the mark before a create is fenced on the lease and on the time left in it."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert, select

from reconciler.engine.outbox import Outbox
from reconciler.engine.schema import zoho_orders
from reconciler.providers.zoho.store import mark_requested, queue_in_doubt_again


def claimed(engine, clock, worker="w1", lease_seconds=60) -> int:
    with engine.begin() as conn:
        conn.execute(insert(zoho_orders).values(order_id="T2M-1", next_attempt_at=clock.now))
    [row] = Outbox(engine, zoho_orders, worker, lease_seconds=lease_seconds, retry_schedule_seconds=[1],
                   clock=clock).claim(1)
    return row["id"]


def submitted_at(engine, row_id):
    with engine.connect() as conn:
        return conn.scalar(select(zoho_orders.c.submitted_at).where(zoho_orders.c.id == row_id))


def test_the_mark_is_written_once_by_the_lease_holder_with_time_enough(engine, clock):
    row_id = claimed(engine, clock)
    assert mark_requested(engine, row_id, "w1", clock.now, clock.now + timedelta(seconds=30))
    first = submitted_at(engine, row_id)
    clock.advance(5)
    assert mark_requested(engine, row_id, "w1", clock.now, clock.now + timedelta(seconds=30))
    assert submitted_at(engine, row_id) == first  # the first request's time stays


def test_no_mark_without_the_lease_or_with_too_little_of_it_left(engine, clock):
    row_id = claimed(engine, clock, lease_seconds=60)
    assert not mark_requested(engine, row_id, "another-worker", clock.now, clock.now)
    assert not mark_requested(engine, row_id, "w1", clock.now, clock.now + timedelta(seconds=61))
    assert submitted_at(engine, row_id) is None


def test_in_doubt_orders_go_back_to_the_queue_once_after_their_grace(engine, clock):
    row_id = claimed(engine, clock)
    with engine.begin() as conn:
        conn.execute(zoho_orders.update().values(status="in_doubt", locked_by=None, updated_at=clock.now))
    assert queue_in_doubt_again(engine, clock.now - timedelta(seconds=1), "w2", clock.now) == []
    clock.advance(10)
    [(order, outcome)] = queue_in_doubt_again(engine, clock.now - timedelta(seconds=5), "w2", clock.now)
    assert (order["id"], outcome.status, outcome.cause) == (row_id, "queued", "in_doubt_grace_over")
    assert queue_in_doubt_again(engine, clock.now, "w3", clock.now) == []
    with engine.connect() as conn:
        row = conn.execute(select(zoho_orders).where(zoho_orders.c.id == row_id)).mappings().one()
    assert (row["status"], row["next_attempt_at"]) == ("queued", clock.now)
