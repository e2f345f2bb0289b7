"""The MTN client: reading what the reseller really sends, and saying whether an order may exist."""
from __future__ import annotations

import socket
import threading
from datetime import datetime, timezone

import pytest

from reconciler.providers.mtn.client import (
    MtnClient, MtnInDoubt, MtnUnreachable, ResellerStatus, canonical_status, history_entries, parse_json, parse_order,
)

PHP_NOISE = "<br />\n<b>Warning</b>:  Undefined index: plan in /var/www/api/orders.php on line 12<br />\n"


@pytest.mark.parametrize("body, expected", [
    ('{"success":true,"order_id":7}', {"success": True, "order_id": 7}),
    (PHP_NOISE + '{"success":true,"order_id":7}', {"success": True, "order_id": 7}),
    ("<html><body>notice [1] {not json}</body></html>" + '[{"id":1}]', [{"id": 1}]),
])
def test_json_is_found_after_php_warnings_and_html(body, expected):
    assert parse_json(body) == expected


def test_a_body_without_json_is_an_error():
    with pytest.raises(ValueError):
        parse_json("<html>502 Bad Gateway</html>")


@pytest.mark.parametrize("document", [
    [{"id": 1, "status": "success"}],
    {"success": True, "data": [{"id": 1, "status": "success"}]},
    {"orders": [{"id": 1, "status": "success"}]},
    {"success": True, "data": {"orders": [{"id": 1, "status": "success"}]}},
])
def test_history_is_read_in_every_envelope(document):
    assert [parse_order(e).id for e in history_entries(document)] == ["1"]


@pytest.mark.parametrize("words, status", [
    (("success", "delivered", "fulfilled", "sent", "Successful", "COMPLETED"), ResellerStatus.DELIVERED),
    (("error", "cancelled", "rejected", "expired", "refunded", "Failed"), ResellerStatus.FAILED),
    (("queued", "in_progress", "submitted", "pending", "in progress", "something new", None), ResellerStatus.PROCESSING),
])
def test_status_synonyms(words, status):
    assert {canonical_status(w) for w in words} == {status}


@pytest.mark.parametrize("size", [{"size_gb": 2}, {"size_mb": 2048}, {"size_mb": 2000}, {"size_mb": "2048"},
                                  {"plan_name": "MTN 2GB"}, {"plan_name": "2 gb bundle"}])
def test_an_order_entry_is_read_whatever_the_size_unit(size):
    order = parse_order({"id": 99, "status": "delivered", "recipient_phone": "0241234567", "network": "MTN", **size})
    assert (order.id, order.status, order.raw_status, order.size_gb) == ("99", ResellerStatus.DELIVERED, "delivered", 2)


def test_an_unreadable_size_or_time_is_none_not_a_guess():
    order = parse_order({"order_id": 7, "size_mb": 1500, "created_at": "yesterday"})
    assert (order.id, order.size_gb, order.created_at) == ("7", None, None)


@pytest.mark.parametrize("written", ["2026-11-23T10:00:00Z", "2026-11-23T10:00:00+00:00", "2026-11-23 10:00:00",
                                     "2026-11-23T11:00:00+01:00"])
def test_order_times_are_read_as_utc(written):
    assert parse_order({"id": 1, "created_at": written}).created_at == datetime(2026, 11, 23, 10, tzinfo=timezone.utc)


def test_a_refused_connection_proves_the_order_was_not_sent():
    client = MtnClient("http://127.0.0.1:1", "key", timeout_seconds=1)
    with pytest.raises(MtnUnreachable):
        client.create_order("0241234567", "MTN", 1)


def test_a_connection_closed_after_sending_leaves_the_order_in_doubt():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def read_then_hang_up():
        conn, _ = listener.accept()
        conn.recv(65536)  # the request arrived: the provider may have acted on it
        conn.close()

    threading.Thread(target=read_then_hang_up, daemon=True).start()
    client = MtnClient(f"http://127.0.0.1:{listener.getsockname()[1]}", "key", timeout_seconds=5)
    try:
        with pytest.raises(MtnInDoubt):
            client.create_order("0241234567", "MTN", 1)
    finally:
        listener.close()


def test_every_call_is_audited_without_the_api_key(engine):
    from sqlalchemy import select

    from reconciler.engine.schema import api_calls
    from reconciler.http.audit import AuditLog

    from tests.webhook_receiver import Answer, Receiver

    reseller = Receiver(lambda _: Answer(200, body=(PHP_NOISE + '{"success":true,"order_id":4321}').encode()))
    try:
        client = MtnClient(reseller.url(""), "sk-reseller-secret-77", timeout_seconds=5, audit=AuditLog(engine))
        assert client.create_order("0241234567", "MTN", 2) == "4321"
        assert reseller.requests[0].headers["x-api-key"] == "sk-reseller-secret-77"
    finally:
        reseller.close()
    with engine.connect() as conn:
        [call] = conn.execute(select(api_calls)).mappings().all()
    assert (call["provider"], call["method"], call["status_code"]) == ("mtn", "POST", 200)
    assert call["url"].endswith("/api/orders") and '"order_id":4321' in call["response_body"]
    assert "sk-reseller-secret-77" not in " ".join(str(v) for v in call.values())


@pytest.mark.parametrize("shape", ["bare", "data", "orders"])
def test_the_client_reads_the_fake_reseller_through_its_noise(shape):
    from reconciler.providers.mtn.fake import COMPLETED_WORDS, PHP_WARNING, FakeMtn, MtnFaults

    faults = MtnFaults(noise_prefix=PHP_WARNING, history_shape=shape, balance_as_string=True,
                       completed_words=COMPLETED_WORDS)
    with FakeMtn(faults=faults, balance=100) as reseller:
        client = MtnClient(reseller.url, reseller.api_key, timeout_seconds=5)
        order_id = client.create_order("0241234567", "MTN", 2)
        reseller.process_pending()
        [order] = client.history()
        assert (order.id, order.status, order.recipient_phone) == (order_id, ResellerStatus.DELIVERED, "0241234567")
        assert client.balance() == 90


def test_a_timeout_after_the_reseller_created_the_order_is_in_doubt():
    from reconciler.providers.mtn.fake import FakeMtn, MtnFaults

    with FakeMtn(faults=MtnFaults(timeout_after_create=1, timeout_sleep_seconds=2)) as reseller:
        client = MtnClient(reseller.url, reseller.api_key, timeout_seconds=0.3)
        with pytest.raises(MtnInDoubt):
            client.create_order("0241234567", "MTN", 1)
        assert [o.recipient_phone for o in client.history()] == ["0241234567"]  # it exists all the same


@pytest.mark.parametrize("setup, error", [
    (dict(api_key="other"), "MtnUnauthorised"),
    (dict(balance=1), "MtnInsufficientBalance"),
    (dict(plans=(5,)), "MtnRejected"),
    (dict(faults_rate_limit=True), "MtnRateLimited"),
    (dict(faults_5xx=True), "MtnInDoubt"),
])
def test_provider_errors_become_typed_errors(setup, error):
    from reconciler.providers.mtn import client as mtn_client
    from reconciler.providers.mtn.fake import FakeMtn, MtnFaults

    faults = MtnFaults(rate_limit_429_rate=1.0 if setup.pop("faults_rate_limit", False) else 0.0,
                       error_5xx_rate=1.0 if setup.pop("faults_5xx", False) else 0.0)
    with FakeMtn(faults=faults, **setup) as reseller:
        client = MtnClient(reseller.url, "test-mtn-key", timeout_seconds=5)
        with pytest.raises(getattr(mtn_client, error)):
            client.create_order("0241234567", "MTN", 1)
        assert reseller.created_count == 0
