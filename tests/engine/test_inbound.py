"""The receiver's insert: stored once, deduplicated, and a restarted PostgreSQL costs no webhook."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from reconciler.engine.drivers.postgres import hot_path_engine
from reconciler.engine.inbound import store_inbound, store_refused
from reconciler.engine.schema import inbound_webhooks

from tests.engine.test_outbox import drop_other_connections


def rows(engine) -> list[tuple]:
    t = inbound_webhooks
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(
            t.c.dedupe_key, t.c.provider_order_id, t.c.signature_valid, t.c.received_at, t.c.processed_at,
            t.c.process_error).order_by(t.c.id))]


def test_an_event_is_stored_once_with_its_times_in_utc_and_a_refused_one_closed(engine, clock):
    assert store_inbound(engine, "mtn", "7:delivered:t", '{"order": 7}', "7", clock.now) is True
    assert store_inbound(engine, "mtn", "7:delivered:t", '{"order": 7}', "7", clock.now) is False
    assert store_refused(engine, "mtn", b"forged", "bad signature", clock.now) is True
    stored, refused = rows(engine)
    assert stored == ("7:delivered:t", "7", True, clock.now, None, None)
    assert refused[1:] == (None, False, clock.now, clock.now, "bad signature")


@pytest.mark.parametrize("new_database", ["postgresql"], indirect=True)  # a PostgreSQL matter
def test_an_event_is_stored_after_the_server_dropped_every_idle_connection(engine, clock):
    pool = hot_path_engine(engine)
    held = [pool.raw_connection() for _ in range(3)]
    for connection in held:  # three idle connections in the pool: a retry on the next one would fail too
        connection.close()
    drop_other_connections(engine)
    assert store_inbound(engine, "mtn", "8:delivered:t", "{}", "8", clock.now) is True
    assert [r[0] for r in rows(engine)] == ["8:delivered:t"]
