"""Arbitrary requests, signed and unsigned, at the daemon's public listener on both databases: every one gets an
answer (never an empty reply), never a 5xx, no order changes for a request that was not correctly signed, and
the receiver and the job that applies webhooks are healthy afterwards."""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import socket
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select, update

from jobs import apply_mtn_webhooks
from reconciler.app import assemble
from reconciler.config import Config
from reconciler.engine.schema import mtn_orders

from tests.factories import add_mtn_orders, job_context
from tests.raw_http import read_answer

SECRET = "fuzz-webhook-secret"
PATH = "/api/webhook/mtn"
PROVIDER_IDS = ["501", "502", "503"]
HEALTH_CHECK_ID = "600"  # an order no fuzzed request names
FUZZ = settings(max_examples=300, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

texts = st.text(max_size=30)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                    texts, st.sampled_from(["delivered", "failed", "processing", "9999-12-31T23:59:59-01:00",
                                            "\ud800", "\x00", "9" * 9000, "MTN 5GB"]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(texts, inner, max_size=4), max_leaves=12)
orders = st.fixed_dictionaries({"id": st.one_of(st.sampled_from(PROVIDER_IDS), scalars)}, optional={
    key: scalars for key in ("status", "updated_at", "created_at", "size_mb", "size_gb", "plan_name",
                             "recipient_phone", "message")})
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.builds(lambda order, extra: json.dumps({"event": "order.status_changed", "order": order}).encode() + extra,
              orders, st.sampled_from([b"", b"\x00", b" 1e999", b"]"])),
    st.integers(1, 6000).map(lambda n: b"[" * n),
    st.sampled_from([b'{"order": {"id": 501, "status": "delivered", "amount": 1e999}}',
                     b'{"order": {"id": "\\ud800", "status": "delivered"}}']))
header_values = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
methods = st.one_of(st.sampled_from(["POST", "GET", "PUT", "DELETE", "PATCH", "OPTIONS"]),
                    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ-", min_size=1, max_size=12))
lengths = st.one_of(st.just("right"), st.just("missing"), st.sampled_from(["-1", "²", "1e3", "99999999", "0x10", ""]))


@dataclasses.dataclass
class Sent:
    status: int
    headers: dict[str, str]
    body: bytes


def build(method: str, path: str, body: bytes, signature: bytes | None, length: str,
          extra: list[tuple[bytes, bytes]]) -> bytes:
    head = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1"]
    if length != "missing":
        head.append(b"Content-Length: " + (str(len(body)) if length == "right" else length).encode())
    if signature is not None:
        head.append(b"X-Webhook-Signature: " + signature)
    head += [name + b": " + value for name, value in extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def send(port: int, raw: bytes) -> Sent:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(raw)
        try:
            conn.shutdown(socket.SHUT_WR)  # a Content-Length longer than the body must not leave us both waiting
        except OSError:
            pass
        status, headers, body = read_answer(conn)
    return Sent(status, headers, body)


def check(answer: Sent) -> None:
    assert answer.status < 500, (answer.status, answer.body)
    assert answer.headers["content-type"] == "application/json"
    assert isinstance(json.loads(answer.body), dict)


def sign(body: bytes) -> bytes:
    return b"sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest().encode()


def order_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(select(mtn_orders).order_by(mtn_orders.c.id)).mappings()]


@pytest.fixture
def receiver(engine, clock):
    config = Config()
    config = dataclasses.replace(config, mtn=dataclasses.replace(config.mtn, webhook_secret=SECRET),
                                 receiver=dataclasses.replace(config.receiver, host="127.0.0.1", port=0,
                                                              max_body_bytes=16384))
    ids = add_mtn_orders(engine, len(PROVIDER_IDS) + 1)
    with engine.begin() as conn:
        for row_id, provider_id in zip(ids, [*PROVIDER_IDS, HEALTH_CHECK_ID]):
            conn.execute(update(mtn_orders).where(mtn_orders.c.id == row_id)
                         .values(status="submitted", provider_order_id=provider_id, submitted_at=clock()))
    listener = assemble(config, engine, clock=clock).public_listener().start()
    yield listener, job_context(engine, config, clock)
    listener.stop()


def test_arbitrary_requests_get_an_answer_and_only_signed_ones_can_change_an_order(engine, receiver):
    listener, ctx = receiver
    before = order_rows(engine)

    @FUZZ
    @given(methods, st.sampled_from([PATH, PATH, "/", "/api/webhook/mtn?x=1", "/api/webhook/%00", "//x"]), bodies,
           st.one_of(st.none(), header_values, st.builds(lambda b: sign(b + b"x"), st.binary(max_size=8))),
           lengths, st.lists(st.tuples(st.sampled_from([b"X-Other", b"Content-Type", b"Expect"]), header_values),
                             max_size=2))
    def unsigned(method, path, body, signature, length, extra):
        check(send(listener.port, build(method, path, body, signature, length, extra)))

    @FUZZ
    @given(bodies, lengths)
    def signed(body, length):
        check(send(listener.port, build("POST", PATH, body, sign(body), length, [])))

    unsigned()
    apply_mtn_webhooks.run(ctx)
    assert order_rows(engine) == before

    signed()
    apply_mtn_webhooks.run(ctx)  # whatever was stored, the job gets through it

    event = json.dumps({"order": {"id": HEALTH_CHECK_ID, "status": "delivered", "updated_at": "2026-11-30T10:00:00Z"}}).encode()
    assert send(listener.port, build("POST", PATH, event, sign(event), "right", [])).status == 200
    apply_mtn_webhooks.run(ctx)
    assert {row["provider_order_id"]: row["status"] for row in order_rows(engine)}[HEALTH_CHECK_ID] == "completed"
