"""Recipient locks: at most one unsettled order per recipient and size, across batches and replicas."""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import Engine, select, text, update

from reconciler.config import load_config
from reconciler.engine.outbox import Outbox, Outcome
from reconciler.engine.schema import COMPLETED, SUBMITTED, mtn_orders
from reconciler.providers.mtn.store import lock_recipients

from tests.factories import add_mtn_orders, job_context

KEY_A, KEY_B = "0241234567:1", "0551234567:2"


def outbox_of(engine: Engine, clock, worker: str = "test-worker") -> Outbox:
    return job_context(engine, load_config(env={}), clock, worker).outboxes[mtn_orders.name]


def claim_new(engine: Engine, clock, count: int, worker: str = "test-worker", prefix: str = "shop") -> list[int]:
    ids = add_mtn_orders(engine, count, due_at=clock.now, prefix=prefix)
    assert sorted(r["id"] for r in outbox_of(engine, clock, worker).claim(count)) == ids
    return ids


def locks(engine: Engine) -> dict[int, str | None]:
    with engine.connect() as conn:
        return dict(conn.execute(select(mtn_orders.c.id, mtn_orders.c.recipient_lock)).all())


def test_within_a_batch_the_first_order_to_a_recipient_gets_the_lock(engine, clock) -> None:
    first, second, other = claim_new(engine, clock, 3)
    assert lock_recipients(engine, "test-worker", {first: KEY_A, second: KEY_A, other: KEY_B}, clock()) == {first, other}
    assert locks(engine) == {first: KEY_A, second: None, other: KEY_B}


def test_an_unsettled_order_keeps_its_recipient_from_later_batches(engine, clock) -> None:
    [sent] = claim_new(engine, clock, 1, prefix="first")
    lock_recipients(engine, "test-worker", {sent: KEY_A}, clock())
    assert outbox_of(engine, clock).finalise([Outcome(sent, SUBMITTED, "submitted", {})]).finalised == [sent]
    later, other = claim_new(engine, clock, 2, prefix="later")
    assert lock_recipients(engine, "test-worker", {later: KEY_A, other: KEY_B}, clock()) == {other}
    assert locks(engine) == {sent: KEY_A, later: None, other: KEY_B}


def test_a_lock_left_on_a_settled_order_is_taken_over(engine, clock) -> None:
    [settled] = claim_new(engine, clock, 1, prefix="first")
    lock_recipients(engine, "test-worker", {settled: KEY_A}, clock())
    # Settled by hand, say: completed, but its lock was not cleared.
    assert outbox_of(engine, clock).finalise([Outcome(settled, COMPLETED, "by_hand", {})]).finalised == [settled]
    [new] = claim_new(engine, clock, 1, prefix="later")
    assert lock_recipients(engine, "test-worker", {new: KEY_A}, clock()) == {new}
    assert locks(engine) == {settled: None, new: KEY_A}


def test_only_rows_this_worker_holds_in_flight_are_locked(engine, clock) -> None:
    [theirs] = claim_new(engine, clock, 1, worker="other-worker", prefix="theirs")
    [ours] = claim_new(engine, clock, 1, prefix="ours")
    assert lock_recipients(engine, "test-worker", {theirs: KEY_A, ours: KEY_B}, clock()) == {ours}
    assert locks(engine) == {theirs: None, ours: KEY_B}


@pytest.mark.parametrize("new_database", ["postgresql"], indirect=True)
def test_a_key_another_replica_takes_mid_statement_leaves_only_that_order_waiting(engine, clock) -> None:
    [theirs] = claim_new(engine, clock, 1, worker="other-worker", prefix="theirs")
    ours_a, ours_b = claim_new(engine, clock, 2, prefix="ours")
    with engine.connect() as replica:
        # The other replica has locked KEY_A but not yet committed: our statement cannot see it and waits on the
        # unique index, then fails once the replica commits.
        replica.execute(update(mtn_orders).where(mtn_orders.c.id == theirs).values(recipient_lock=KEY_A))
        result: dict[str, set[int]] = {}
        locking = threading.Thread(target=lambda: result.update(
            locked=lock_recipients(engine, "test-worker", {ours_a: KEY_A, ours_b: KEY_B}, clock())))
        locking.start()
        wait_until_a_lock_is_awaited(engine)
        replica.commit()
    locking.join(timeout=30)
    assert result["locked"] == {ours_b}
    assert locks(engine) == {theirs: KEY_A, ours_a: None, ours_b: KEY_B}


def wait_until_a_lock_is_awaited(engine: Engine, timeout_seconds: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    with engine.connect() as conn:
        # Scoped to this test's database: tests running beside it may wait on locks of their own.
        while not conn.scalar(text("SELECT count(*) FROM pg_stat_activity "
                                   "WHERE datname = current_database() AND wait_event_type = 'Lock'")):
            conn.rollback()  # a fresh snapshot of pg_stat_activity
            assert time.monotonic() < deadline, "the lock statement never waited for the replica"
            time.sleep(0.01)
