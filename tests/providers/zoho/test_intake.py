"""The T2Mobile intake API over real sockets, on SQLite and PostgreSQL: Bearer keys, the catalogue, an order
queued as a shop's INSERT would queue it, field errors listed, Idempotency-Key (replay, 422, 409, expiry),
one order per orderId, rate limit per key shared by replicas, health."""
from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from jobs import prune_idempotency_keys
from reconciler.config import Product
from reconciler.coordination.pauses import Pauses
from reconciler.engine.db import make_engine
from reconciler.engine.schema import idempotency_keys, zoho_orders
from reconciler.providers.zoho.idempotency import IdempotencyKeys
from reconciler.providers.zoho.intake import client_id, request_fingerprint

from tests.factories import job_context
from tests.providers.zoho.intake_server import KEY, ROTATED, Partner, intake_config, order_body, serve, with_partner
from tests.racing import together


@pytest.fixture
def config():
    return intake_config()


@pytest.fixture
def listener(config, engine, clock):
    server = serve(config, engine, clock)
    yield server
    server.stop()


@pytest.fixture
def partner(listener):
    return Partner(listener)


def orders(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(zoho_orders).order_by(zoho_orders.c.id)).mappings()]


def stored_keys(engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(idempotency_keys))


# -- Bearer keys


@pytest.mark.parametrize("authorization", [None, "Bearer ", "Bearer wrong-key", f"Basic {KEY}", KEY,
                                           f"Bearer {KEY}x", f"Bearer {KEY[:-1]}"])
def test_a_call_without_a_known_key_is_401_with_a_bearer_challenge(listener, authorization):
    partner = Partner(listener, api_key=None)
    headers = {} if authorization is None else {"Authorization": authorization}
    for answer in (partner.get("/t2mobile/products", headers=headers),
                   partner.get("/t2mobile/orders/T2M-1", headers=headers),
                   partner.order(order_body(), key="k-1", headers=headers)):
        assert answer.status_code == 401
        assert answer.json()["error"] == "unauthorized"
        assert answer.headers["WWW-Authenticate"].startswith('Bearer realm="t2mobile"')


def test_every_configured_key_works_so_keys_can_be_rotated(listener):
    for key in (KEY, ROTATED):
        assert Partner(listener, key).get("/t2mobile/products").status_code == 200


def test_no_configured_key_refuses_every_call(engine, clock):
    server = serve(intake_config(api_keys=""), engine, clock)
    try:
        for key in ("", KEY, "anything"):
            assert Partner(server, key).get("/t2mobile/products").status_code == 401
    finally:
        server.stop()


# -- the catalogue


def test_products_lists_the_catalogue_with_a_price_and_currency_per_tenure(engine, clock):
    config = intake_config(products={
        "ZOHO_CRM_STD": Product("Zoho CRM Standard", "4815000000044208", "NGN", {"12_MONTHS": 150000.0,
                                                                                 "1_MONTH": 15000.0}),
        "ZOHO_MAIL": Product("Zoho Mail Lite", "4815000000044300", "USD", {"3_MONTHS": 9.5})})
    server = serve(config, engine, clock)
    try:
        answer = Partner(server).get("/t2mobile/products")
    finally:
        server.stop()
    assert answer.json() == {"products": [
        {"id": "ZOHO_CRM_STD", "name": "Zoho CRM Standard", "tenures": [
            {"tenure": "1_MONTH", "months": 1, "price": 15000.0, "currency": "NGN"},
            {"tenure": "12_MONTHS", "months": 12, "price": 150000.0, "currency": "NGN"}]},
        {"id": "ZOHO_MAIL", "name": "Zoho Mail Lite", "tenures": [
            {"tenure": "3_MONTHS", "months": 3, "price": 9.5, "currency": "USD"}]}]}


# -- a new order


def test_a_new_order_is_queued_as_a_shop_would_insert_it_and_answered_202_with_its_status_url(
        engine, partner, caplog):
    caplog.set_level(logging.DEBUG)
    body = order_body("T2M-1001")
    answer = partner.order(body, key="8e03978e-40d5-43e8-bc93-6894a57f9324")
    assert answer.status_code == 202
    assert answer.headers["Location"] == "/t2mobile/orders/T2M-1001"
    shown = answer.json()
    assert shown["statusUrl"] == "/t2mobile/orders/T2M-1001"
    assert {k: shown[k] for k in ("orderId", "productId", "tenure", "customerId", "status", "salesOrderId",
                                  "activationReference", "expiryDate", "lastError")} == {
        "orderId": "T2M-1001", "productId": "ZOHO_CRM_STD", "tenure": "12_MONTHS", "customerId": "CUST-0042",
        "status": "queued", "salesOrderId": None, "activationReference": None, "expiryDate": None, "lastError": None}
    [row] = orders(engine)
    assert {k: row[k] for k in ("order_id", "customer_id", "customer_name", "customer_email", "customer_phone",
                                "product_id", "tenure", "status", "attempts", "locked_by")} == {
        "order_id": "T2M-1001", "customer_id": "CUST-0042", "customer_name": "Ada Okafor",
        "customer_email": "ada.okafor@example.ng", "customer_phone": "+234 803 555 0142",
        "product_id": "ZOHO_CRM_STD", "tenure": "12_MONTHS", "status": "queued", "attempts": 0, "locked_by": None}
    assert row["idempotency_key"] == f"{client_id(KEY)}:8e03978e-40d5-43e8-bc93-6894a57f9324"
    assert partner.get(answer.headers["Location"]).json() == shown
    accepted = [r.getMessage() for r in caplog.records if "accepted" in r.getMessage()]
    assert accepted == ["partner order T2M-1001 accepted: product ZOHO_CRM_STD, tenure 12_MONTHS, "
                        "customer a***@example.ng, +23***********142"]
    assert "okafor" not in caplog.text and "555" not in caplog.text and KEY not in caplog.text


@pytest.mark.parametrize("header", [None, "", '""', '"unterminated', 'two words', '"' + "k" * 256 + '"',
                                    '"tab\there"'])
def test_a_post_without_a_wellformed_idempotency_key_is_400_and_nothing_is_written(engine, partner, header):
    headers = {} if header is None else {"Idempotency-Key": header}
    answer = partner.order(order_body(), headers=headers)
    assert (answer.status_code, answer.json()["error"]) == (400, "idempotency_key_invalid")
    assert orders(engine) == [] and stored_keys(engine) == 0


def test_every_bad_field_is_listed_at_once_and_the_key_is_freed_for_the_corrected_body(engine, partner):
    bad = {"orderId": "", "productId": "ZOHO_NOPE", "customerId": 42, "customerName": "x" * 201,
           "customerEmail": "ada@", "customerPhone": "call me", "tenure": "2_YEARS"}
    answer = partner.order(bad, key="k-fields")
    assert answer.status_code == 400
    error = answer.json()
    assert error["error"] == "invalid_fields"
    assert error["fields"] == {
        "orderId": "must not be empty", "productId": "unknown product; GET /t2mobile/products lists them",
        "customerId": "must be a string",
        "customerName": "must be at most 200 characters", "customerEmail": "must be an e-mail address",
        "customerPhone": "must be a phone number: 7-15 digits, optionally a leading + and single spaces or dashes",
        "tenure": "must be one of 1_MONTH, 3_MONTHS, 6_MONTHS, 12_MONTHS, 24_MONTHS"}
    missing = partner.order({"orderId": "T2M-7"}, key="k-fields")
    assert set(missing.json()["fields"]) == {"productId", "customerId", "customerName", "customerEmail",
                                             "customerPhone", "tenure"}
    assert set(missing.json()["fields"].values()) == {"required"}
    assert orders(engine) == [] and stored_keys(engine) == 0
    assert partner.order(order_body("T2M-7"), key="k-fields").status_code == 202


@pytest.mark.parametrize("changes, field, why", [
    ({"productId": "ZOHO_NOPE"}, "productId", "unknown product; GET /t2mobile/products lists them"),
    ({"tenure": "24_MONTHS"}, "tenure", "not sold for ZOHO_MAIL; it has 3_MONTHS, 12_MONTHS"),
    ({"customerName": "   "}, "customerName", "must hold some text and no control characters"),
    ({"customerId": "CUST\x00"}, "customerId", "must hold some text and no control characters"),
    ({"orderId": "T2M/../1"}, "orderId", "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter "
                                         "or digit"),
    ({"orderId": "T2M-1\n"}, "orderId", "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter "
                                        "or digit"),
])
def test_a_field_the_catalogue_or_the_rules_refuse_is_named(engine, clock, changes, field, why):
    config = intake_config(products={"ZOHO_MAIL": Product("Zoho Mail Lite", "4815000000044300", "USD",
                                                          {"3_MONTHS": 9.5, "12_MONTHS": 30.0})})
    server = serve(config, engine, clock)
    try:
        answer = Partner(server).order(order_body(**{"productId": "ZOHO_MAIL", **changes}), key="k-1")
    finally:
        server.stop()
    assert (answer.status_code, answer.json()["fields"]) == (400, {field: why})
    assert orders(engine) == []


@pytest.mark.parametrize("body, content_type, status, error", [
    (b"{not json", "application/json", 400, "invalid_json"),
    (b'"\\ud800"', "application/json", 400, "invalid_json"),
    (b"\xff\xfe", "application/json", 400, "invalid_json"),
    (b"[1, 2]", "application/json", 400, "invalid_fields"),
    (b"{}", "text/plain", 415, "unsupported_media_type"),
])
def test_a_body_that_is_not_a_json_object_is_a_json_4xx(engine, partner, body, content_type, status, error):
    answer = partner.session.post(partner.base + "/t2mobile/fulfilment", data=body, timeout=10,
                                  headers={"Idempotency-Key": '"k-1"', "Content-Type": content_type})
    assert (answer.status_code, answer.json()["error"]) == (status, error)
    assert orders(engine) == [] and stored_keys(engine) == 0


# -- Idempotency-Key


def test_the_same_key_and_body_get_the_stored_answer_again_marked_as_a_replay(engine, partner):
    body = order_body()
    first = partner.order(body, key="k-replay")
    # the same JSON, keys in another order and spaced differently: the same request
    again = partner.session.post(partner.base + "/t2mobile/fulfilment", timeout=10,
                                 data=json.dumps(dict(reversed(body.items())), indent=2),
                                 headers={"Idempotency-Key": "k-replay", "Content-Type": "application/json"})
    assert (again.status_code, again.content, again.headers["Location"]) == (
        first.status_code, first.content, first.headers["Location"])
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert len(orders(engine)) == 1


def test_the_same_key_with_another_body_is_422_and_changes_nothing(engine, partner):
    assert partner.order(order_body("T2M-1"), key="k-1").status_code == 202
    answer = partner.order(order_body("T2M-2"), key="k-1")
    assert (answer.status_code, answer.json()["error"]) == (422, "idempotency_key_reused")
    assert [o["order_id"] for o in orders(engine)] == ["T2M-1"]


def test_the_same_key_while_the_first_request_is_handled_is_409_until_its_claim_runs_out(engine, partner, config,
                                                                                          clock):
    body = order_body("T2M-9")
    # another replica has claimed the key for this very request and is still handling it (or died doing so)
    IdempotencyKeys(engine, 24, clock).claim(client_id(KEY), "k-busy",
                                             request_fingerprint("/t2mobile/fulfilment", body))
    answer = partner.order(body, key="k-busy")
    assert (answer.status_code, answer.json()["error"]) == (409, "idempotency_key_in_use")
    assert orders(engine) == []
    clock.advance(31)  # a claim is held 30 s at most
    assert partner.order(body, key="k-busy").status_code == 202


def test_a_second_key_for_an_existing_order_answers_that_order_as_it_is_now_and_never_makes_another(
        engine, partner):
    body = order_body("T2M-42")
    assert partner.order(body, key="k-first").status_code == 202
    expiry = "2027-11-30T09:00:00Z"
    with engine.begin() as conn:
        conn.execute(update(zoho_orders).values(status="completed", zoho_salesorder_id="4815000000099001",
                                                activation_reference="T2M-ACT-7Q4K", expiry_date=_utc(expiry)))
    for key, payload in (("k-second", body), ("k-third", order_body("T2M-42", tenure="1_MONTH"))):
        answer = partner.order(payload, key=key)
        assert answer.status_code == 200
        assert answer.headers["Location"] == "/t2mobile/orders/T2M-42"
        assert {k: answer.json()[k] for k in ("status", "salesOrderId", "activationReference", "expiryDate",
                                             "tenure")} == {
            "status": "completed", "salesOrderId": "4815000000099001", "activationReference": "T2M-ACT-7Q4K",
            "expiryDate": expiry, "tenure": "12_MONTHS"}
    assert len(orders(engine)) == 1


def _utc(text: str):
    from datetime import datetime
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_keys_belong_to_their_api_key(engine, listener):
    one, other = Partner(listener, KEY), Partner(listener, ROTATED)
    assert one.order(order_body("T2M-1"), key="k-shared").status_code == 202
    assert other.order(order_body("T2M-2"), key="k-shared").status_code == 202  # not another's 422
    assert [o["order_id"] for o in orders(engine)] == ["T2M-1", "T2M-2"]


def test_an_answer_is_replayed_for_the_ttl_then_pruned_and_the_key_stays_its_orders(engine, clock, config):
    server = serve(with_partner(config, idempotency_ttl_hours=2), engine, clock)
    try:
        partner = Partner(server)
        body = order_body("T2M-1")
        assert partner.order(body, key="k-ttl").status_code == 202
        clock.advance(2 * 3600 - 1)
        assert partner.order(body, key="k-ttl").headers["Idempotent-Replayed"] == "true"
        prune_idempotency_keys.run(job_context(engine, config, clock))
        assert stored_keys(engine) == 1
        clock.advance(1)
        prune_idempotency_keys.run(job_context(engine, config, clock))
        assert stored_keys(engine) == 0
        # the answer is forgotten: the same request now gets the order as it is; the key still names that order
        again = partner.order(body, key="k-ttl")
        assert (again.status_code, "Idempotent-Replayed" in again.headers) == (200, False)
        assert partner.order(order_body("T2M-2"), key="k-ttl").status_code == 422
    finally:
        server.stop()
    assert [o["order_id"] for o in orders(engine)] == ["T2M-1"]
    assert prune_idempotency_keys.job(config).interval_seconds == 3600


@pytest.fixture
def replica_listeners(replicas, config, clock):
    """Two replicas of the daemon's public listener, each with its own engine (connection pool)."""
    servers = [serve(config, engine, clock) for engine, _ in replicas[:2]]
    yield servers
    for server in servers:
        server.stop()


def test_replicas_racing_the_same_key_make_one_order_and_one_202(engine, replica_listeners):
    body = order_body("T2M-RACE")
    partners = [Partner(replica_listeners[i % 2]) for i in range(8)]
    answers = together(*(lambda p=p: p.order(body, key="k-race") for p in partners))
    fresh = [a for a in answers if a.status_code == 202 and "Idempotent-Replayed" not in a.headers]
    assert len(fresh) == 1
    assert all(a.status_code == 409 or a.headers.get("Idempotent-Replayed") == "true" for a in answers
               if a is not fresh[0])
    assert [o["order_id"] for o in orders(engine)] == ["T2M-RACE"]


def test_replicas_racing_one_order_under_different_keys_make_one_order(engine, replica_listeners):
    body = order_body("T2M-RACE2")
    answers = together(*(lambda i=i: Partner(replica_listeners[i % 2]).order(body, key=f"k-{i}") for i in range(8)))
    assert sorted(a.status_code for a in answers) == [200] * 7 + [202]
    assert [o["order_id"] for o in orders(engine)] == ["T2M-RACE2"]


# -- an order's status


def test_an_unknown_order_is_404(partner):
    for order_id in ("T2M-404", "T2M%00x", "%C3%A9"):
        answer = partner.get(f"/t2mobile/orders/{order_id}")
        assert (answer.status_code, answer.json()["error"]) == (404, "not_found")


def test_a_rejected_order_shows_why(engine, partner):
    partner.order(order_body("T2M-R"), key="k-r")
    with engine.begin() as conn:
        conn.execute(update(zoho_orders).values(status="rejected", reject_reason="product_not_sold: ZOHO_X"))
    shown = partner.get("/t2mobile/orders/T2M-R").json()
    assert (shown["status"], shown["lastError"]) == ("rejected", "product_not_sold: ZOHO_X")


# -- rate limit


def test_calls_over_the_rate_are_429_per_api_key_shared_by_replicas(replicas, engine, config, clock):
    limited = with_partner(config, requests_per_minute=3)
    servers = [serve(limited, replica, clock) for replica, _ in replicas[:2]]
    try:
        one = [Partner(servers[0]), Partner(servers[1])]
        assert [one[i % 2].get("/t2mobile/products").status_code for i in range(3)] == [200, 200, 200]
        refused = one[1].order(order_body(), key="k-1")
        assert (refused.status_code, refused.json()["error"], refused.headers["Retry-After"]) == (
            429, "rate_limited", "60")
        assert Partner(servers[1], ROTATED).get("/t2mobile/products").status_code == 200  # another key's own rate
        clock.advance(60)
        assert one[0].get("/t2mobile/products").status_code == 200
    finally:
        for server in servers:
            server.stop()
    with engine.connect() as conn:
        keys = conn.exec_driver_sql("SELECT key FROM rate_limits ORDER BY key").scalars().all()
    assert keys == sorted([f"partner:{client_id(KEY)}", f"partner:{client_id(ROTATED)}"])
    assert all(KEY not in k and ROTATED not in k for k in keys)


# -- health


def test_health_is_200_when_orders_can_be_taken_and_503_with_why_while_zoho_is_paused(engine, listener, clock):
    health = Partner(listener, api_key=None)
    answer = health.get("/t2mobile/health")
    assert (answer.status_code, answer.json()) == (200, {"status": "ok"})
    Pauses(engine).pause("zoho", "daily_cap", clock() + timedelta(hours=3), clock())
    answer = health.get("/t2mobile/health")
    assert (answer.status_code, answer.json()["error"], answer.headers["Retry-After"]) == (503, "not_ready", "10800")
    assert "paused (daily_cap)" in answer.json()["message"]
    Pauses(engine).resume("zoho", clock())
    assert health.get("/t2mobile/health").status_code == 200


def test_health_is_503_when_the_database_is_unreachable_or_the_flow_not_configured(config, engine, clock):
    down = make_engine("postgresql://postgres@127.0.0.1:1/nowhere")
    unconfigured = intake_config(webhook_url="")
    servers = [serve(config, down, clock), serve(unconfigured, engine, clock)]
    try:
        answers = [Partner(s, api_key=None).get("/t2mobile/health") for s in servers]
    finally:
        for server in servers:
            server.stop()
    assert [(a.status_code, a.json()["error"], "Retry-After" in a.headers) for a in answers] == [
        (503, "database_unavailable", True), (503, "not_ready", True)]
    assert "not configured" in answers[1].json()["message"]


def test_the_openapi_document_is_served_without_a_key_with_this_servers_product_ids(listener):
    document = Partner(listener, api_key=None).get("/t2mobile/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert document["components"]["schemas"]["FulfilmentRequest"]["properties"]["productId"]["enum"] == [
        "ZOHO_CRM_STD"]


def test_no_api_key_reaches_a_log(engine, listener, caplog):
    caplog.set_level(logging.DEBUG)
    for key in (KEY, "Wrong-Key-Attempt-123"):
        partner = Partner(listener, key)
        partner.get("/t2mobile/products")
        partner.order(order_body(), key=str(uuid.uuid4()))
        partner.get("/t2mobile/orders/T2M-1")
    assert caplog.records  # something was logged, and none of it is a key
    assert KEY not in caplog.text and "Wrong-Key-Attempt-123" not in caplog.text
