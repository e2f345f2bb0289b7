"""Outgoing webhooks: signed so a partner can verify them, retried, paused per endpoint, never lost."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from jobs.deliver_webhooks import DeliverWebhooks
from reconciler.config import Config, DaemonConfig, NotifyConfig, PartnerConfig, WebhooksConfig
from reconciler.engine.events import NOTIFY, PARTNER, Event
from reconciler.engine.outbox import Outbox, Outcome
from reconciler.engine.schema import mtn_orders, webhook_attempts, webhook_deliveries, webhook_endpoints
from reconciler.webhooks.endpoints import load_states

from tests.factories import add_mtn_orders, job_context, queue_events
from tests.webhook_receiver import Answer, Receiver


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


@pytest.fixture
def receiver():
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


def config(partner_secret: str = "", notify_secret: str = "", notify_style: str = "standard", **webhooks) -> Config:
    settings = dict(timeout_seconds=5, breaker_failures=5, breaker_pause_seconds=60, max_per_second=1000)
    settings.update(webhooks)
    return Config(partner=PartnerConfig(webhook_secret=partner_secret, retry_schedule_seconds=(30, 120)),
                  notify=NotifyConfig(webhook_secret=notify_secret, signature=notify_style),
                  webhooks=WebhooksConfig(**settings), daemon=DaemonConfig(batch_size=50))


def events(url: str, count: int, audience: str = PARTNER, order: str = "T2-1") -> list[Event]:
    return [Event("ORDER_FULFILLED", audience, url, order, {"n": i}) for i in range(count)]


def deliveries(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(webhook_deliveries).order_by(webhook_deliveries.c.id)).mappings()]


def deliver(engine, cfg: Config, clock, job: DeliverWebhooks | None = None) -> DeliverWebhooks:
    job = job or DeliverWebhooks(cfg)
    job.run(job_context(engine, cfg, clock))
    return job


def test_deliveries_verify_with_the_standardwebhooks_package_during_a_secret_rotation(engine, clock, receiver):
    new, old = new_secret(), new_secret()
    cfg = config(partner_secret=f"{new} {old}")
    ids = queue_events(engine, events(receiver.url(), 3), clock.now)
    deliver(engine, cfg, clock)

    assert [r.headers["webhook-id"] for r in receiver.requests] == ids
    for secret in (new, old):
        for request in receiver.requests:
            Webhook(secret).verify(request.body, request.headers)  # raises if it does not verify
    bodies = [json.loads(r.body) for r in receiver.requests]
    assert [(b["id"], b["sequence"], b["order_id"], b["data"]) for b in bodies] == [
        (ids[0], 1, "T2-1", {"n": 0}), (ids[1], 2, "T2-1", {"n": 1}), (ids[2], 3, "T2-1", {"n": 2})]
    stored = deliveries(engine)
    assert [r.body for r in receiver.requests] == [row["payload"].encode() for row in stored]
    assert {row["status"] for row in stored} == {"delivered"}
    with engine.connect() as conn:
        logged = conn.execute(select(webhook_attempts.c.event_id, webhook_attempts.c.status_code,
                                     webhook_attempts.c.attempt)).all()
    assert sorted(logged) == sorted((i, 200, 1) for i in ids)


def test_an_endpoint_may_ask_for_a_plain_hmac_sha256_signature(engine, clock, receiver):
    secret = new_secret()
    queue_events(engine, events(receiver.url(), 1, audience=NOTIFY), clock.now)
    deliver(engine, config(notify_secret=secret, notify_style="sha256"), clock)
    [request] = receiver.requests
    expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-webhook-signature"] == f"sha256={expected}"


def test_an_event_is_queued_only_when_its_state_change_is_written(engine, clock):
    first, second = add_mtn_orders(engine, 2, due_at=clock.now)
    worker = Outbox(engine, mtn_orders, "w1", lease_seconds=60, retry_schedule_seconds=[10], clock=clock,
                    rescue_status="in_doubt")
    worker.claim(2)
    clock.advance(61)
    Outbox(engine, mtn_orders, "rescuer", lease_seconds=60, retry_schedule_seconds=[10], clock=clock,
           rescue_status="in_doubt").rescue_expired()  # w1 loses both leases
    event = Event("order.completed", NOTIFY, "http://127.0.0.1:9/n", "shop-0")
    assert worker.finalise([Outcome(first, "completed", "delivered", events=(event,))]).lost == [first]
    assert deliveries(engine) == []

    [fresh] = add_mtn_orders(engine, 1, due_at=clock.now, prefix="fresh")
    owner = Outbox(engine, mtn_orders, "w2", lease_seconds=60, retry_schedule_seconds=[10], clock=clock)
    owner.claim(1)
    owner.finalise([Outcome(fresh, "completed", "delivered", events=(event,))])
    assert [(d["event_type"], d["order_ref"], d["sequence"]) for d in deliveries(engine)] == [
        ("order.completed", "shop-0", 1)]


def test_an_endpoint_down_for_an_hour_gets_every_event_once_it_is_back(engine, clock, receiver):
    up = threading.Event()
    receiver.answer = lambda _: Answer(200) if up.is_set() else Answer(503, body=b"maintenance")
    cfg = config(partner_secret=new_secret())
    ids = queue_events(engine, events(receiver.url(), 20), clock.now)
    job = None
    down_until = clock.now + timedelta(hours=1)
    while clock.now < down_until:
        job = deliver(engine, cfg, clock, job)
        clock.advance(30)
    attempts_while_down = len(receiver.requests)
    up.set()
    for _ in range(200):
        job = deliver(engine, cfg, clock, job)
        if all(d["status"] == "delivered" for d in deliveries(engine)):
            break
        clock.advance(30)

    assert all(d["status"] == "delivered" for d in deliveries(engine)), "nothing lost, nothing dead"
    delivered_ids = [r.headers["webhook-id"] for r in receiver.requests[attempts_while_down:]]
    assert sorted(delivered_ids) == sorted(ids)  # each exactly once after the outage, with its original id
    assert attempts_while_down < 40, "the breaker paused the endpoint instead of hammering it"


def test_410_disables_the_endpoint_and_other_endpoints_carry_on(engine, clock, receiver):
    healthy = Receiver()
    try:
        receiver.answer = lambda _: Answer(410, body=b"gone")
        cfg = config(partner_secret=new_secret())
        queue_events(engine, events(receiver.url(), 2) + events(healthy.url(), 1, order="T2-2"), clock.now)
        deliver(engine, cfg, clock)
        assert len(receiver.requests) == 1  # the second event never left: the endpoint is disabled
        assert [(d["endpoint_url"] == healthy.url(), d["status"]) for d in deliveries(engine)] == [
            (False, "dead"), (False, "dead"), (True, "delivered")]
        with engine.connect() as conn:
            assert conn.scalar(select(webhook_endpoints.c.disabled_at)
                               .where(webhook_endpoints.c.url == receiver.url())) is not None
    finally:
        healthy.close()


def test_429_waits_as_long_as_retry_after_says(engine, clock, receiver):
    receiver.answer = lambda _: Answer(429, headers={"Retry-After": "120"})
    queue_events(engine, events(receiver.url(), 1), clock.now)
    deliver(engine, config(partner_secret=new_secret()), clock)
    [row] = deliveries(engine)
    assert row["status"] == "queued" and row["last_status_code"] == 429
    assert row["next_attempt_at"] == clock.now + timedelta(seconds=120)
    assert load_states(engine, [receiver.url()])[receiver.url()].consecutive_failures == 0  # busy, not broken


def test_500_is_retried_on_the_schedule_with_jitter_then_dead(engine, clock, receiver):
    receiver.answer = lambda _: Answer(500, body=b"<html>oops</html>")
    cfg = config(partner_secret=new_secret(), breaker_failures=100)
    queue_events(engine, events(receiver.url(), 1), clock.now)
    job = deliver(engine, cfg, clock)
    [row] = deliveries(engine)
    assert row["status"] == "queued" and 24 <= (row["next_attempt_at"] - clock.now).total_seconds() <= 36
    assert row["last_error"] == "HTTP 500: <html>oops</html>"
    for _ in range(2):
        clock.advance(200)
        deliver(engine, cfg, clock, job)
    assert deliveries(engine)[0]["status"] == "dead" and len(receiver.requests) == 3


def test_a_hanging_endpoint_times_out_and_is_retried(engine, clock, receiver):
    release = threading.Event()
    receiver.answer = lambda _: Answer(200, hang=release)
    queue_events(engine, events(receiver.url(), 1), clock.now)
    try:
        deliver(engine, config(partner_secret=new_secret(), timeout_seconds=0.3), clock)
    finally:
        release.set()
    [row] = deliveries(engine)
    assert (row["status"], row["last_error"], row["last_status_code"]) == ("queued", "timeout", None)


def test_redirects_are_failures_and_are_not_followed(engine, clock, receiver):
    receiver.answer = lambda r: Answer(302, headers={"Location": receiver.url("/elsewhere")}) \
        if r.path == "/hook" else Answer(200)
    queue_events(engine, events(receiver.url(), 1), clock.now)
    deliver(engine, config(partner_secret=new_secret()), clock)
    assert [r.path for r in receiver.requests] == ["/hook"]
    assert deliveries(engine)[0]["last_error"].startswith("HTTP 302")


def test_a_refused_connection_is_a_failure(engine, clock):
    queue_events(engine, events("http://127.0.0.1:1/hook", 1), clock.now)
    deliver(engine, config(partner_secret=new_secret()), clock)
    [row] = deliveries(engine)
    assert (row["status"], row["last_error"]) == ("queued", "connection")


@pytest.mark.parametrize("url, reason", [
    ("not a url", "is not an http or https URL"), ("ftp://shop.example/hook", "is not an http or https URL"),
    ("http:///hook", "names no host"), ("https://shop.example:99999/hook", "is not a URL")])
def test_a_url_that_can_never_be_delivered_to_is_dead_at_once_with_the_reason(engine, clock, receiver, url, reason):
    queue_events(engine, events(url, 1, audience=NOTIFY) + events(receiver.url(), 1, audience=NOTIFY, order="2"),
                 clock.now)
    deliver(engine, config(notify_secret=new_secret()), clock)
    dead, delivered = deliveries(engine)
    assert (dead["status"], dead["attempts"]) == ("dead", 1)
    assert dead["last_error"].startswith(f"webhook URL {url!r} {reason}")
    assert delivered["status"] == "delivered" and len(receiver.requests) == 1


def test_a_burst_to_one_endpoint_is_rate_limited(engine, clock, receiver):
    cfg = config(partner_secret=new_secret(), max_per_second=10)
    queue_events(engine, events(receiver.url(), 25), clock.now)
    job = deliver(engine, cfg, clock)
    assert len(receiver.requests) == 10
    clock.advance(1)
    deliver(engine, cfg, clock, job)
    assert len(receiver.requests) == 20
    assert all(d["attempts"] in (0, 1) for d in deliveries(engine))  # held back, not failed


def test_the_rate_of_one_endpoint_holds_for_all_replicas_together(engine, clock, receiver):
    cfg = config(partner_secret=new_secret(), max_per_second=10)
    queue_events(engine, events(receiver.url(), 25), clock.now)
    for replica in ("replica-a", "replica-b"):
        DeliverWebhooks(cfg).run(job_context(engine, cfg, clock, worker=replica))
    assert len(receiver.requests) == 10


def test_without_a_secret_nothing_is_sent_unsigned(engine, clock, receiver):
    queue_events(engine, events(receiver.url(), 1), clock.now)
    deliver(engine, config(partner_secret=""), clock)
    assert receiver.requests == []
    [row] = deliveries(engine)
    assert row["status"] == "queued" and "partner.webhook_secret" in row["last_error"]
