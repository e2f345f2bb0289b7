"""The outbox engine: claiming, leases, fenced finalisation, rescue, release and retries."""
from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from reconciler.engine.clock import utcnow
from reconciler.engine.db import make_engine
from reconciler.engine.drivers.postgres import PostgresQueries, hot_path_engine
from reconciler.engine.events import NOTIFY, Event
from reconciler.engine.outbox import Completion, Outbox, Outcome
from reconciler.engine.schema import mtn_orders, status_history, webhook_deliveries
from reconciler.engine.stats import table_stats

from tests.factories import add_mtn_orders


def outbox(engine, clock, worker="w1", **kwargs) -> Outbox:
    options = dict(lease_seconds=60, retry_schedule_seconds=[10, 100], clock=clock, rng=lambda: 0.5)
    options.update(kwargs)
    return Outbox(engine, kwargs.pop("table", mtn_orders), worker, **options)


def row(engine, row_id):
    with engine.connect() as conn:
        return conn.execute(select(mtn_orders).where(mtn_orders.c.id == row_id)).mappings().one()


def history(engine, row_id):
    with engine.connect() as conn:
        return conn.execute(
            select(status_history.c.from_status, status_history.c.to_status, status_history.c.cause,
                   status_history.c.worker_id)
            .where(status_history.c.table_name == "mtn_orders", status_history.c.row_id == row_id)
            .order_by(status_history.c.id)).all()


def test_claim_takes_due_rows_oldest_first_under_a_lease(engine, clock):
    later = add_mtn_orders(engine, 2, due_at=clock.now + timedelta(hours=1), prefix="later")
    clock.advance(1)
    due = add_mtn_orders(engine, 5, due_at=clock.now - timedelta(seconds=1))
    claimed = outbox(engine, clock).claim(3)
    assert [r["id"] for r in claimed] == due[:3]
    assert all(r["status"] == "in_flight" and r["locked_by"] == "w1" and r["attempts"] == 1 for r in claimed)
    assert claimed[0]["locked_until"] == clock.now + timedelta(seconds=60)
    assert row(engine, later[0])["status"] == "queued"
    assert history(engine, due[0]) == [("queued", "in_flight", "claimed", "w1")]


def test_two_workers_never_claim_the_same_row(engine, clock):
    ids = add_mtn_orders(engine, 10, due_at=clock.now)
    first = outbox(engine, clock, "w1").claim(6)
    second = outbox(engine, clock, "w2").claim(6)
    assert len(first) == 6 and len(second) == 4
    assert {r["id"] for r in first} | {r["id"] for r in second} == set(ids)
    assert not {r["id"] for r in first} & {r["id"] for r in second}


def test_shop_insert_naming_only_its_columns_is_claimable(engine):
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO mtn_orders (shop_order_id, recipient_phone, size_gb) "
                          "VALUES ('order-1', '0241234567', 2)"))
    claimed = Outbox(engine, mtn_orders, "w1", lease_seconds=60, retry_schedule_seconds=[10]).claim(10)
    assert [(r["shop_order_id"], r["network"], r["attempts"]) for r in claimed] == [("order-1", "MTN", 1)]
    assert claimed[0]["created_at"] <= utcnow()


def test_finalise_writes_outcomes_and_frees_the_lease(engine, clock):
    ids = add_mtn_orders(engine, 2, due_at=clock.now)
    box = outbox(engine, clock)
    box.claim(2)
    result = box.finalise([Outcome(ids[0], "submitted", "accepted", {"provider_order_id": "981"}),
                           Outcome(ids[1], "failed", "provider_said_no", {"last_error": "plan not found"})])
    assert result.finalised == ids and result.lost == []
    first, second = row(engine, ids[0]), row(engine, ids[1])
    assert (first["status"], first["provider_order_id"], first["locked_by"]) == ("submitted", "981", None)
    assert (second["status"], second["last_error"], second["locked_until"]) == ("failed", "plan not found", None)
    assert history(engine, ids[1])[-1] == ("in_flight", "failed", "provider_said_no", "w1")


def test_a_worker_whose_lease_was_rescued_cannot_finalise(engine, clock):
    [order] = add_mtn_orders(engine, 1, due_at=clock.now)
    slow = outbox(engine, clock, "slow-worker", rescue_status="in_doubt")
    slow.claim(1)
    clock.advance(61)
    rescuer = outbox(engine, clock, "rescuer", rescue_status="in_doubt")
    assert rescuer.rescue_expired() == [order]
    assert row(engine, order)["status"] == "in_doubt"

    result = slow.finalise([Outcome(order, "submitted", "accepted", {"provider_order_id": "42"})])
    assert result.lost == [order] and result.finalised == []
    after = row(engine, order)
    assert (after["status"], after["provider_order_id"]) == ("in_doubt", None)
    assert slow.release([order]) == []


def test_a_batch_reports_as_written_only_the_last_outcome_of_each_row_it_still_held(engine, clock):
    """What the jobs log as an order's step: never an outcome the fence refused."""
    kept, lost = add_mtn_orders(engine, 2, due_at=clock.now)
    slow = outbox(engine, clock, "slow-worker", rescue_status="in_doubt")
    with slow.claim_batch(2, threading.Event()) as batch:
        list(batch)
        with engine.begin() as conn:  # a rescuer took one row back meanwhile
            conn.execute(mtn_orders.update().where(mtn_orders.c.id == lost).values(status="in_doubt", locked_by=None))
        batch.record(Outcome(kept, "queued", "retry", {"last_error": "first try"}))
        batch.record(Outcome(kept, "submitted", "submitted", {"last_error": None}))
        batch.record(Outcome(lost, "submitted", "submitted", {"last_error": None}))
    assert [(o.row_id, o.status) for o in batch.written()] == [(kept, "submitted")]


@pytest.mark.parametrize("with_events", [False, True], ids=["one_statement", "batched_with_events"])
def test_a_worker_whose_rescued_row_was_claimed_again_by_another_cannot_finalise(engine, clock, with_events):
    ids = add_mtn_orders(engine, 2, due_at=clock.now)
    slow = outbox(engine, clock, "slow-worker")  # rescued leases go back to the queue
    slow.claim(2)
    clock.advance(61)
    assert outbox(engine, clock, "rescuer").rescue_expired() == ids
    clock.advance(10)  # the retry delay: due again
    assert [r["id"] for r in outbox(engine, clock, "w2").claim(2)] == ids  # in flight again, under w2

    events = (Event("order.completed", NOTIFY, "https://shop.example/hook", "shop-0"),) if with_events else ()
    result = slow.finalise([Outcome(i, "submitted", "accepted", {"provider_order_id": f"9{i}"}, events)
                            for i in ids])
    assert result.lost == ids and result.finalised == []
    for i in ids:
        after = row(engine, i)
        assert (after["status"], after["locked_by"], after["provider_order_id"]) == ("in_flight", "w2", None)
        assert history(engine, i)[-1] == ("queued", "in_flight", "claimed", "w2")
    assert table_stats(engine, webhook_deliveries, clock.now).counts == {}  # no event of an unwritten outcome


def finishing_step(calls: list, provider_status: str = "provisioned"):
    """A finish step that writes a row of its own (a status_history note, standing for a licence) and adds a
    column and an event to its outcome."""
    def finish(conn, now):
        calls.append(now)
        conn.execute(status_history.insert().values(table_name="licences", row_id=1, to_status="active",
                                                    cause="provisioned", created_at=now))
        return Completion({"provider_status": provider_status},
                          (Event("order.completed", NOTIFY, "https://shop.example/hook", "shop-0"),))
    return finish


def provisioned(engine) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(status_history.c.id).where(status_history.c.table_name == "licences")).all())


def test_a_finish_step_writes_with_its_outcome_in_the_same_transaction(engine, clock):
    [order] = add_mtn_orders(engine, 1, due_at=clock.now)
    box = outbox(engine, clock)
    box.claim(1)
    calls: list = []
    result = box.finalise([Outcome(order, "completed", "adopted", {"provider_order_id": "7"},
                                   finish=finishing_step(calls))])
    assert result.finalised == [order] and calls == [clock.now]
    after = row(engine, order)
    assert (after["status"], after["provider_order_id"], after["provider_status"]) == ("completed", "7", "provisioned")
    assert provisioned(engine) == 1
    assert table_stats(engine, webhook_deliveries, clock.now).counts == {"queued": 1}
    written = result.written[order]  # what a job logs as the order's step: with what the step added
    assert (written.fields["provider_status"], len(written.events), written.finish) == ("provisioned", 1, None)


def test_a_finish_step_never_runs_for_a_row_whose_lease_was_lost(engine, clock):
    [order] = add_mtn_orders(engine, 1, due_at=clock.now)
    slow = outbox(engine, clock, "slow-worker", rescue_status="in_doubt")
    slow.claim(1)
    clock.advance(61)
    assert outbox(engine, clock, "rescuer", rescue_status="in_doubt").rescue_expired() == [order]
    calls: list = []
    result = slow.finalise([Outcome(order, "completed", "adopted", finish=finishing_step(calls))])
    assert result.lost == [order] and calls == []
    assert provisioned(engine) == 0 and row(engine, order)["status"] == "in_doubt"
    assert table_stats(engine, webhook_deliveries, clock.now).counts == {}


def test_a_finish_step_that_raises_undoes_its_writes_and_makes_only_its_row_dead(engine, clock):
    broken, fine = add_mtn_orders(engine, 2, due_at=clock.now)
    box = outbox(engine, clock)
    box.claim(2)

    def explode(conn, now):
        conn.execute(status_history.insert().values(table_name="licences", row_id=2, to_status="active",
                                                    cause="half done", created_at=now))
        raise RuntimeError("licence table refused it")

    result = box.finalise([Outcome(broken, "completed", "adopted", finish=explode),
                           Outcome(fine, "completed", "adopted", finish=finishing_step([]))])
    assert result.finalised == [broken, fine]
    dead = row(engine, broken)
    assert (dead["status"], dead["last_error"]) == (
        "dead", "finishing as completed failed: RuntimeError: licence table refused it")
    assert history(engine, broken)[-1] == ("in_flight", "dead", "finish_failed", "w1")
    assert row(engine, fine)["status"] == "completed"
    assert provisioned(engine) == 1  # the fine row's; the broken row's half-done write was undone


def test_rescued_leases_of_a_resendable_table_are_retried_with_backoff(engine, clock):
    [order] = add_mtn_orders(engine, 1, due_at=clock.now)
    outbox(engine, clock, "crashed").claim(1)
    clock.advance(30)
    assert outbox(engine, clock, "rescuer").rescue_expired() == []  # lease still valid
    clock.advance(31)
    assert outbox(engine, clock, "rescuer").rescue_expired() == [order]
    rescued = row(engine, order)
    assert rescued["status"] == "queued" and rescued["locked_by"] is None
    assert (rescued["next_attempt_at"] - clock.now).total_seconds() == pytest.approx(10)
    assert "crashed" in rescued["last_error"]


def test_retry_follows_the_schedule_with_jitter_then_dead(engine, clock):
    [order] = add_mtn_orders(engine, 1, due_at=clock.now)
    low = outbox(engine, clock, rng=lambda: 0.0)   # jitter -20%
    high = outbox(engine, clock, rng=lambda: 1.0)  # jitter +20%
    delays = []
    for attempt in (1, 2):
        [claimed] = low.claim(1)
        assert claimed["attempts"] == attempt
        assert high.retry(claimed, "timeout").fields["next_attempt_at"] - clock.now \
            == timedelta(seconds=[12, 120][attempt - 1])
        outcome = low.retry(claimed, "timeout")
        delays.append((outcome.fields["next_attempt_at"] - clock.now).total_seconds())
        low.finalise([outcome])
        clock.advance(1000)
    assert delays == [pytest.approx(8), pytest.approx(80)]
    [claimed] = low.claim(1)
    outcome = low.retry(claimed, "timeout")
    assert (outcome.status, outcome.cause) == ("dead", "retries_exhausted")
    low.finalise([outcome])
    assert row(engine, order)["status"] == "dead" and row(engine, order)["last_error"] == "timeout"


def test_release_hands_rows_back_without_counting_the_attempt(engine, clock):
    ids = add_mtn_orders(engine, 3, due_at=clock.now)
    box = outbox(engine, clock)
    box.claim(3)
    assert box.release(ids[1:]) == ids[1:]
    assert [row(engine, i)["status"] for i in ids] == ["in_flight", "queued", "queued"]
    assert row(engine, ids[1])["attempts"] == 0
    assert [r["id"] for r in outbox(engine, clock, "w2").claim(5)] == ids[1:]


def test_batch_stops_starting_rows_on_shutdown_and_hands_back_the_rest(engine, clock):
    ids = add_mtn_orders(engine, 5, due_at=clock.now)
    stop = threading.Event()
    box = outbox(engine, clock)
    with box.claim_batch(5, stop) as batch:
        for order in batch:
            batch.record(Outcome(order["id"], "submitted", "accepted"))
            if order["id"] == ids[1]:
                stop.set()
    assert batch.result.finalised == ids[:2]
    assert [row(engine, i)["status"] for i in ids] == ["submitted"] * 2 + ["queued"] * 3


def test_batch_starts_no_row_it_could_not_finish_within_the_lease(engine, clock):
    ids = add_mtn_orders(engine, 3, due_at=clock.now)
    box = outbox(engine, clock)  # 60 s leases
    with box.claim_batch(3, threading.Event(), reserve_seconds=15) as batch:
        for order in batch:
            clock.advance(50)  # slow work: after the first row only 10 s of lease remain
            batch.record(Outcome(order["id"], "submitted", "accepted"))
    assert [row(engine, i)["status"] for i in ids] == ["submitted", "queued", "queued"]
    assert row(engine, ids[1])["attempts"] == 0


def test_batch_leaves_a_row_whose_handler_raised_to_the_rescuer(engine, clock):
    ids = add_mtn_orders(engine, 3, due_at=clock.now)
    box = outbox(engine, clock, rescue_status="in_doubt")
    with pytest.raises(RuntimeError):
        with box.claim_batch(3, threading.Event()) as batch:
            for order in batch:
                if order["id"] == ids[1]:
                    raise RuntimeError("connection reset after send")
                batch.record(Outcome(order["id"], "submitted", "accepted"))
    # the first is finalised, the one that blew up keeps its lease, the unstarted one is handed back
    assert [row(engine, i)["status"] for i in ids] == ["submitted", "in_flight", "queued"]
    clock.advance(61)
    assert box.rescue_expired() == [ids[1]]
    assert row(engine, ids[1])["status"] == "in_doubt"


def test_table_stats_counts_statuses_and_the_oldest_due_row(engine, clock):
    add_mtn_orders(engine, 3, due_at=clock.now)
    box = outbox(engine, clock)
    [first] = box.claim(1)
    box.finalise([Outcome(first["id"], "dead", "retries_exhausted")])
    clock.advance(42)
    stats = table_stats(engine, mtn_orders, clock.now)
    assert stats.counts == {"queued": 2, "dead": 1}
    assert stats.oldest_queued_age_seconds == pytest.approx(42)
    assert table_stats(engine, webhook_deliveries, clock.now).oldest_queued_age_seconds == 0


def test_table_stats_gives_a_row_deferred_to_later_its_age_not_0s(engine, clock):
    waiting, _ = add_mtn_orders(engine, 2, due_at=clock.now)
    with engine.begin() as conn:  # an order the balance does not cover, say: queued ten minutes, due in 30 s
        conn.execute(update(mtn_orders).where(mtn_orders.c.id == waiting).values(
            created_at=clock.now - timedelta(seconds=600), next_attempt_at=clock.now + timedelta(seconds=30)))
    clock.advance(5)
    stats = table_stats(engine, mtn_orders, clock.now)
    assert stats.oldest_queued_age_seconds == pytest.approx(5)  # the due one
    assert stats.oldest_waiting_age_seconds == pytest.approx(605)
    assert table_stats(engine, webhook_deliveries, clock.now).oldest_waiting_age_seconds == 0


def claim_index_entries_read(engine) -> int:
    """PostgreSQL's count of entries read from the claim index (flushed first: stats are reported lazily)."""
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_force_next_flush()"))
    with engine.connect() as conn:  # a fresh snapshot of the statistics
        return conn.scalar(text("SELECT idx_tup_read FROM pg_stat_user_indexes "
                                "WHERE indexrelname = 'mtn_orders_claim_idx'"))


def test_a_claim_reads_its_batch_not_the_backlog_even_with_stale_statistics(engine, clock):
    with engine.begin() as conn:
        conn.execute(text("ANALYZE mtn_orders"))  # statistics of an empty table...
    add_mtn_orders(engine, 5000, due_at=clock.now)  # ...then a backlog the planner does not know of
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            plan = " ".join(str(r[-1]) for r in conn.execute(text(
                "EXPLAIN QUERY PLAN SELECT id FROM mtn_orders WHERE status = 'queued' AND next_attempt_at <= "
                "CURRENT_TIMESTAMP ORDER BY next_attempt_at, id LIMIT 50")))
        assert "mtn_orders_claim_idx" in plan and "TEMP B-TREE" not in plan  # ordered walk, no sort
        assert len(outbox(engine, clock).claim(50)) == 50
        return
    before = claim_index_entries_read(engine)
    assert len(outbox(engine, clock).claim(50)) == 50
    assert claim_index_entries_read(engine) - before <= 100  # a sort of the backlog would read 5000


@pytest.mark.parametrize("new_database", ["postgresql"], indirect=True)  # a PostgreSQL matter
def test_the_claim_sessions_keep_the_options_of_the_database_url(db_url):
    engine = make_engine(db_url + "?options=-c%20statement_timeout%3D4321")
    with hot_path_engine(engine, "-c enable_seqscan=off").connect() as conn:
        assert conn.scalar(text("SHOW statement_timeout")) == "4321ms"
        assert conn.scalar(text("SHOW enable_seqscan")) == "off"
    with engine.connect() as conn:
        assert conn.scalar(text("SHOW enable_seqscan")) == "on"
    engine.dispose()


def drop_other_connections(engine) -> None:
    """What a server restart or an idle timeout does to the pools' idle connections."""
    others = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:  # a fresh view each time
        conn.execute(text(f"SELECT pg_terminate_backend(pid) {others}"))
        while conn.scalar(text(f"SELECT count(*) {others}")):
            time.sleep(0.01)


@pytest.mark.parametrize("new_database", ["postgresql"], indirect=True)  # a PostgreSQL matter
def test_claim_and_finalise_survive_the_server_dropping_idle_connections(engine, clock):
    ids = add_mtn_orders(engine, 4, due_at=clock.now)
    box = outbox(engine, clock)
    first = box.claim(2)
    drop_other_connections(engine)
    assert box.finalise([Outcome(r["id"], "completed", "done") for r in first]).finalised == ids[:2]
    drop_other_connections(engine)
    assert [r["id"] for r in box.claim(2)] == ids[2:]
    assert history(engine, ids[2]) == [("queued", "in_flight", "claimed", "w1")]


@pytest.mark.parametrize("new_database", ["postgresql"], indirect=True)  # a PostgreSQL matter
def test_a_finalise_whose_reply_was_lost_after_it_committed_still_reports_its_rows(engine, clock, monkeypatch):
    ids = add_mtn_orders(engine, 2, due_at=clock.now)
    box = outbox(engine, clock)
    box.claim(2)
    write = PostgresQueries.finalise

    def write_then_lose_the_reply(self, conn, *args):
        write(self, conn, *args)  # autocommit: this is written
        monkeypatch.setattr(PostgresQueries, "finalise", write)
        raise DBAPIError("finalise", {}, OSError("server closed the connection"), connection_invalidated=True)

    monkeypatch.setattr(PostgresQueries, "finalise", write_then_lose_the_reply)
    result = box.finalise([Outcome(i, "completed", "done") for i in ids])
    assert result.finalised == ids and result.lost == []
    assert [cause for *_, cause, _ in history(engine, ids[0])] == ["claimed", "done"]  # written once


def _claim_until_empty(url: str, worker: str, start, results) -> None:
    engine = make_engine(url)
    box = Outbox(engine, mtn_orders, worker, lease_seconds=300, retry_schedule_seconds=[10])
    mine = []
    start.wait()  # all four connected and imported: now they really race
    while rows := box.claim(37):
        mine.extend(r["id"] for r in rows)
        box.finalise([Outcome(r["id"], "completed", "done") for r in rows])
    results.put(mine)
    engine.dispose()


def test_four_worker_processes_claim_every_row_exactly_once(engine, db_url, clock):
    add_mtn_orders(engine, 10000, due_at=clock.now)
    spawn = multiprocessing.get_context("spawn")
    results, start = spawn.Queue(), spawn.Barrier(4)
    workers = [spawn.Process(target=_claim_until_empty, args=(db_url, f"w{i}", start, results)) for i in range(4)]
    for w in workers:
        w.start()
    claimed = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(30)
        assert w.exitcode == 0
    counts = Counter(i for ids in claimed for i in ids)
    assert len(counts) == 10000 and set(counts.values()) == {1}
    if engine.dialect.name == "postgresql":  # SQLite's one write lock promises no fairness between processes
        assert all(len(ids) > 0 for ids in claimed), "every worker took part"
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM mtn_orders WHERE status = 'completed'")) == 10000
        claims_per_row = conn.execute(text(
            "SELECT count(*) FROM status_history WHERE to_status = 'in_flight' GROUP BY row_id")).scalars().all()
    assert set(claims_per_row) == {1}
