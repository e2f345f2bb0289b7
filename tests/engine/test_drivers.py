"""The driver conformance suite: every database driver keeps the engine's promises, tested through the
Driver interface alone (as River tests its drivers). A new driver passes this file before anything else."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, func, insert, select, update

from reconciler.engine.drivers import DRIVERS, driver_for
from reconciler.engine.outbox import Outcome
from reconciler.engine.schema import COMPLETED, FAILED, IN_FLIGHT, QUEUED, mtn_orders, status_history

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def rows(engine: Engine, count: int, due: datetime = T0, status: str = QUEUED) -> list[int]:
    values = [{"shop_order_id": f"o-{i}-{due.timestamp()}-{status}", "recipient_phone": "0241234567",
               "size_gb": 1, "next_attempt_at": due + timedelta(seconds=i), "status": status} for i in range(count)]
    with engine.begin() as conn:
        return list(conn.scalars(insert(mtn_orders).returning(mtn_orders.c.id), values))


def states(engine: Engine) -> dict[int, tuple]:
    t = mtn_orders
    with engine.connect() as conn:
        return {r.id: (r.status, r.locked_by, r.attempts)
                for r in conn.execute(select(t.c.id, t.c.status, t.c.locked_by, t.c.attempts))}


def history(engine: Engine) -> list[tuple]:
    h = status_history
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(h.c.row_id, h.c.from_status, h.c.to_status, h.c.cause,
                                                      h.c.worker_id).order_by(h.c.id))]


def test_every_known_database_has_a_driver_and_its_migrations(engine):
    from reconciler.engine.migrate import available_migrations
    assert set(DRIVERS) == {"postgresql", "sqlite"}
    assert [m.version for m in available_migrations(engine.dialect.name)][:3] == [1, 2, 3]
    assert driver_for(engine) is DRIVERS[engine.dialect.name]


def test_claim_takes_due_queued_rows_oldest_first_up_to_the_limit(engine):
    queries = driver_for(engine).outbox_queries(engine, mtn_orders)
    due = rows(engine, 5)
    later = rows(engine, 2, due=T0 + timedelta(hours=1))
    done = rows(engine, 1, status=COMPLETED)
    claimed = queries.claim(3, "w1", T0 + timedelta(minutes=1), T0 + timedelta(minutes=6))
    assert [r["id"] for r in claimed] == due[:3]
    assert all((r["status"], r["locked_by"], r["attempts"]) == (IN_FLIGHT, "w1", 1) for r in claimed)
    assert claimed[0]["locked_until"] == T0 + timedelta(minutes=6)
    rest = queries.claim(10, "w2", T0 + timedelta(minutes=1), T0 + timedelta(minutes=6))
    assert [r["id"] for r in rest] == due[3:]  # not the later ones, not the completed one, not w1's
    assert {i: states(engine)[i][0] for i in later + done} == {later[0]: QUEUED, later[1]: QUEUED, done[0]: COMPLETED}
    assert history(engine)[:3] == [(i, QUEUED, IN_FLIGHT, "claimed", "w1") for i in due[:3]]


def test_claims_racing_never_share_a_row(engine):
    queries = driver_for(engine).outbox_queries(engine, mtn_orders)
    ids = rows(engine, 200)
    taken: list[list[int]] = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def worker(n: int) -> None:
        start.wait()
        while batch := queries.claim(7, f"w{n}", T0 + timedelta(hours=1), T0 + timedelta(hours=2)):
            taken[n] += [r["id"] for r in batch]

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    everything = [i for batch in taken for i in batch]
    assert sorted(everything) == ids  # each row exactly once


def test_finalise_writes_only_rows_the_worker_still_holds(engine):
    queries = driver_for(engine).outbox_queries(engine, mtn_orders)
    mine, theirs = rows(engine, 2), rows(engine, 1, due=T0 + timedelta(minutes=1))
    queries.claim(2, "w1", T0 + timedelta(seconds=30), T0 + timedelta(minutes=5))
    queries.claim(1, "w2", T0 + timedelta(minutes=2), T0 + timedelta(minutes=7))
    outcomes = [Outcome(mine[0], COMPLETED, "done", {"last_error": None}),
                Outcome(mine[1], FAILED, "refused", {"last_error": "no"}),
                Outcome(theirs[0], COMPLETED, "done", {"last_error": None})]
    with engine.begin() as conn:
        written = queries.finalise(conn, outcomes, ("last_error",), "w1", T0 + timedelta(minutes=3))
    assert sorted(written) == mine
    assert states(engine)[theirs[0]] == (IN_FLIGHT, "w2", 1)
    assert states(engine)[mine[1]] == (FAILED, None, 1)
    assert sorted(history(engine)[-2:]) == [(mine[0], IN_FLIGHT, COMPLETED, "done", "w1"),
                                            (mine[1], IN_FLIGHT, FAILED, "refused", "w1")]


def test_finalise_belongs_to_the_callers_transaction(engine):
    queries = driver_for(engine).outbox_queries(engine, mtn_orders)
    [row] = rows(engine, 1)
    queries.claim(1, "w1", T0, T0 + timedelta(minutes=5))
    with pytest.raises(RuntimeError), engine.begin() as conn:
        assert queries.finalise(conn, [Outcome(row, COMPLETED, "done", {})], (), "w1", T0) == [row]
        raise RuntimeError("the caller's transaction fails after the finalise")
    assert states(engine)[row] == (IN_FLIGHT, "w1", 1)


def test_finalise_alone_is_fenced_too(engine):
    queries = driver_for(engine).outbox_queries(engine, mtn_orders)
    [row] = rows(engine, 1)
    queries.claim(1, "w1", T0, T0 + timedelta(minutes=5))
    assert queries.finalise_alone([Outcome(row, COMPLETED, "done", {})], (), "w2", T0) == []
    assert queries.finalise_alone([Outcome(row, COMPLETED, "done", {})], (), "w1", T0) == [row]
    assert queries.finalise_alone([Outcome(row, FAILED, "again", {})], (), "w1", T0) == []  # no longer in flight
    assert states(engine)[row] == (COMPLETED, None, 1)


def test_insert_ignoring_conflicts_inserts_once(engine):
    driver = driver_for(engine)
    statement = (driver.insert_ignoring_conflicts(mtn_orders, ["shop_order_id"])
                 .values(shop_order_id="same", recipient_phone="0241234567", size_gb=1).returning(mtn_orders.c.id))
    with engine.begin() as conn:
        first = conn.scalar(statement)
        second = conn.scalar(statement)
    assert first is not None and second is None


def test_the_migration_lock_makes_a_second_migrator_wait(engine):
    driver = driver_for(engine)
    second_has_it = threading.Event()

    def second() -> None:
        with engine.begin() as conn:
            driver.lock_for_migration(conn)
            second_has_it.set()

    with engine.begin() as conn:
        driver.lock_for_migration(conn)
        conn.execute(update(mtn_orders).values(network="MTN"))  # SQLite: hold the write lock as a migration does
        waiter = threading.Thread(target=second)
        waiter.start()
        assert not second_has_it.wait(0.5)
    assert second_has_it.wait(10)
    waiter.join(10)


def _driver_sql(engine: Engine, shop_order_id: str) -> tuple[str, object]:
    """An insert-ignoring-conflicts of one order, compiled for the driver, with its parameters in its style."""
    statement = (driver_for(engine).insert_ignoring_conflicts(mtn_orders, ["shop_order_id"])
                 .values(shop_order_id=shop_order_id, recipient_phone="0241234567", size_gb=1)
                 .returning(mtn_orders.c.id))
    compiled = statement.compile(dialect=engine.dialect)
    values = compiled.params
    return str(compiled), tuple(values[name] for name in compiled.positiontup) if compiled.positional else values


def test_write_alone_commits_each_write_durably_and_says_what_it_returned(engine):
    driver = driver_for(engine)
    first = driver.write_alone(engine, *_driver_sql(engine, "alone-1"))
    again = driver.write_alone(engine, *_driver_sql(engine, "alone-1"))
    assert first is not None and again is None
    results: list[object] = []
    start = threading.Barrier(8)

    def writer(n: int) -> None:
        start.wait()
        results.append(driver.write_alone(engine, *_driver_sql(engine, f"racer-{n}")))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 8 and all(r is not None for r in results)
    with engine.connect() as conn:  # committed: another connection sees every row
        assert conn.scalar(select(func.count()).select_from(mtn_orders)) == 9
