"""POST /api/webhook/mtn on a real listener: exact bytes, HMAC over them, stored before the 2xx, deduplicated."""
from __future__ import annotations

import hashlib
import hmac
import json
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select

from reconciler.engine.db import make_engine
from reconciler.engine.schema import inbound_webhooks
from reconciler.http.listener import HttpListener
from reconciler.providers.mtn.client import MtnClient
from reconciler.providers.mtn.fake import FakeMtn, MtnFaults
from reconciler.providers.mtn.webhook_route import mtn_webhook_route

from tests.raw_http import exchange

SECRET = "mtn-webhook-secret-5521"
EVENT = json.dumps({"event": "order.status_changed", "timestamp": "2026-11-23T10:00:00Z", "order": {
    "id": 1001, "status": "delivered", "message": "Bundle delivered", "amount": 10, "recipient_phone": "0241234567",
    "plan_name": "MTN 2GB", "network": "MTN", "size_mb": 2048, "created_at": "2026-11-23T09:59:00Z",
    "updated_at": "2026-11-23T10:00:00Z"}}).encode()


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def listener(engine):
    public = HttpListener("127.0.0.1", 0, 65536, {("POST", "/api/webhook/mtn"): mtn_webhook_route(engine, SECRET)})
    yield public.start()
    public.stop()


def url(listener) -> str:
    return f"http://127.0.0.1:{listener.port}/api/webhook/mtn"


def stored(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(select(inbound_webhooks.c.raw_body, inbound_webhooks.c.provider_order_id)).all()


@pytest.mark.parametrize("header", [f"sha256={sign(EVENT)}", sign(EVENT), f"SHA256={sign(EVENT).upper()}"])
def test_a_signed_event_is_stored_raw_before_the_answer(engine, listener, header):
    answer = requests.post(url(listener), data=EVENT, headers={"X-Webhook-Signature": header}, timeout=5)
    assert (answer.status_code, answer.json()) == (200, {"ok": True, "duplicate": False})
    assert stored(engine) == [(EVENT.decode(), "1001")]
    with engine.connect() as conn:
        assert conn.execute(select(inbound_webhooks.c.signature_valid, inbound_webhooks.c.processed_at)).all() \
            == [(True, None)]


@pytest.mark.parametrize("headers, why", [
    ({}, "missing signature"), ({"X-Webhook-Signature": "sha256=" + sign(EVENT, "wrong-secret")}, "bad signature"),
    ({"X-Webhook-Signature": "sha256=" + sign(EVENT + b" ")}, "bad signature")])
def test_a_bad_or_missing_signature_gets_401_and_is_kept_closed_never_applied(engine, listener, headers, why):
    for _ in range(3):  # a flood of the same forged body is one row
        assert requests.post(url(listener), data=EVENT, headers=headers, timeout=5).status_code == 401
    w = inbound_webhooks
    with engine.connect() as conn:
        kept = conn.execute(select(w.c.raw_body, w.c.provider_order_id, w.c.signature_valid, w.c.process_error,
                                   w.c.processed_at == w.c.received_at)).all()
    assert kept == [(EVENT.decode(), None, False, why, True)]  # no order id: nothing would ever apply it


def test_duplicates_are_harmless(engine, listener):
    for expected in (False, True, True):
        answer = requests.post(url(listener), data=EVENT, headers={"X-Webhook-Signature": sign(EVENT)}, timeout=5)
        assert answer.json()["duplicate"] is expected
    assert len(stored(engine)) == 1


def test_a_signed_body_that_is_not_an_event_is_400(engine, listener):
    body = b'{"hello": "world"}'
    assert requests.post(url(listener), data=body, headers={"X-Webhook-Signature": sign(body)},
                         timeout=5).status_code == 400
    assert stored(engine) == []


def raw_exchange(port: int, request: bytes) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(request)
        return conn.recv(4096).decode()


def test_no_content_length_is_411_and_too_large_is_413_unread(engine, listener):
    chunked = (b"POST /api/webhook/mtn HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + f"{len(EVENT):x}\r\n".encode() + EVENT + b"\r\n0\r\n\r\n")
    assert raw_exchange(listener.port, chunked).startswith("HTTP/1.1 411")
    huge = b"POST /api/webhook/mtn HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n"  # no body sent at all
    assert raw_exchange(listener.port, huge).startswith("HTTP/1.1 413")
    assert stored(engine) == []


def test_real_webhooks_from_the_fake_reseller_duplicates_included(engine, listener):
    faults = MtnFaults(webhook_duplicate_rate=1.0)
    with FakeMtn(webhook_url=url(listener), webhook_secret=SECRET, faults=faults) as reseller:
        order_id = MtnClient(reseller.url, reseller.api_key, timeout_seconds=5).create_order("0241234567", "MTN", 1)
        reseller.process_pending()
        assert reseller.wait_for_webhooks(2)
        assert [w.status_code for w in reseller.webhooks] == [200, 200]  # the same event, twice
    assert [provider_order for _, provider_order in stored(engine)] == [order_id]
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(inbound_webhooks)
                           .where(inbound_webhooks.c.processed_at.is_(None))) == 1


def event_with(**order: object) -> bytes:
    document = json.loads(EVENT)
    document["order"].update(order)
    return json.dumps(document).encode()


@pytest.mark.parametrize("body", [
    EVENT.replace(b'"amount": 10', b'"amount": 1e999'),
    EVENT.replace(b'"size_mb": 2048', b'"size_mb": 1e999'),
    event_with(created_at="9999-12-31T23:59:59-01:00"),
    event_with(created_at="0001-01-01T00:00:00+01:00"),
    EVENT.replace(b'"status": "delivered"', b'"status": "\\ud800"'),
    event_with(id="\ud800"),
    event_with(id="10\u000001"),
    b"[" * 5000,
    b'{"order": ' * 5000,
    EVENT + b"\x00",  # trailing noise is tolerated, but PostgreSQL text cannot hold a NUL
    event_with(id="9" * 9000),
    b"not json at all",
    b"\xff\xfe\x00garbage",
])
def test_a_correctly_signed_body_we_cannot_use_or_store_is_400_and_not_stored(engine, listener, body):
    answer = requests.post(url(listener), data=body, headers={"X-Webhook-Signature": sign(body)}, timeout=5)
    assert answer.status_code == 400 and "error" in answer.json()
    assert stored(engine) == []


def test_a_non_ascii_signature_is_a_bad_signature(engine, listener):
    request = (b"POST /api/webhook/mtn HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(EVENT)).encode()
               + "\r\nX-Webhook-Signature: sha256=é²\r\n\r\n".encode() + EVENT)
    assert exchange(listener.port, request)[::2] == (401, b'{"error": "bad_signature", "message": "bad or missing signature"}')


def test_an_unsigned_body_with_a_nul_byte_is_kept_readable(engine, listener):
    body = b'{"order": {"id": "1\x00"}}'
    assert requests.post(url(listener), data=body, timeout=5).status_code == 401
    assert stored(engine) == [('{"order": {"id": "1\ufffd"}}', None)]


@pytest.mark.parametrize("down_url", ["postgresql://postgres@127.0.0.1:1/nowhere", "sqlite:////nonexistent/dir/x.db"])
def test_a_database_outage_is_503_with_retry_after(down_url):
    down = make_engine(down_url)
    public = HttpListener("127.0.0.1", 0, 4096, {("POST", "/api/webhook/mtn"): mtn_webhook_route(down, SECRET)})
    try:
        answer = requests.post(url(public.start()), data=EVENT, headers={"X-Webhook-Signature": sign(EVENT)},
                               timeout=5)
    finally:
        public.stop()
        down.dispose()
    assert (answer.status_code, answer.headers["Retry-After"]) == (503, "5")
    assert answer.json() == {"error": "database_unavailable", "message": "database unavailable, retry later"}


def test_concurrent_webhooks_are_each_stored_once_before_their_answer(engine, listener):
    """16 clients at once (on SQLite they share commits): every event stored, each duplicate seen as one."""
    events = [event_with(id=2000 + i) for i in range(40)]

    def send(client: int) -> list[bool]:
        with requests.Session() as session:
            return [session.post(url(listener), data=body, headers={"X-Webhook-Signature": sign(body)},
                                 timeout=10).json()["duplicate"] for body in events[client % 4::4]]

    with ThreadPoolExecutor(16) as pool:
        duplicates = [flag for flags in pool.map(send, range(16)) for flag in flags]
    assert (len(duplicates), duplicates.count(False)) == (160, 40)
    assert sorted(int(order_id) for _, order_id in stored(engine)) == list(range(2000, 2040))
