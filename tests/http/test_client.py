"""The outbound client base: Retry-After read with one cap, transport failures typed by whether the request
may have arrived, and every call recorded for the audit with its order."""
from __future__ import annotations

import socket
import threading
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest
from prometheus_client import REGISTRY, generate_latest

from reconciler.http.audit import ApiCall
from reconciler.http.client import MAX_RETRY_AFTER_SECONDS, HttpClient, OrderRef, TransportError, parse_retry_after

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("header, seconds", [
    ("120", 120.0), ("0", 0.0), ("-5", 0.0), ("2.5", 2.5),
    ("1e9", MAX_RETRY_AFTER_SECONDS), ("inf", MAX_RETRY_AFTER_SECONDS), ("99999999999999999999", MAX_RETRY_AFTER_SECONDS),
    ("nan", None), ("soon", None), ("", None), (None, None),
    (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
    (format_datetime(NOW - timedelta(days=1), usegmt=True), 0.0),
    (format_datetime(NOW + timedelta(days=400), usegmt=True), MAX_RETRY_AFTER_SECONDS),
])
def test_retry_after_is_read_in_both_forms_and_capped(header, seconds):
    assert parse_retry_after(header, NOW) == seconds


class _Slow(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.set()
        self.server.release.wait(5)  # answers after the client has given up

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    server.daemon_threads = True
    server.received, server.release = threading.Event(), threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_refused_connection_certainly_did_not_arrive_and_is_audited_with_its_order():
    calls: list[ApiCall] = []
    client = HttpClient("mtn", f"http://127.0.0.1:{_closed_port()}", connect_timeout_seconds=1,
                        read_timeout_seconds=1, audit=calls.append)
    with pytest.raises(TransportError) as caught:
        client.request("POST", "/api/orders", '{"size_gb": 1}', order=OrderRef("mtn_orders", 42))
    assert (caught.value.kind, caught.value.may_have_arrived) == ("connection", False)
    [call] = calls
    assert (call.status_code, call.error, call.order_table, call.order_id) == (None, "connection", "mtn_orders", 42)


def test_a_read_timeout_after_sending_may_have_arrived(slow_server):
    client = HttpClient("mtn", f"http://127.0.0.1:{slow_server.server_address[1]}", connect_timeout_seconds=1,
                        read_timeout_seconds=0.3)
    with pytest.raises(TransportError) as caught:
        client.request("POST", "/api/orders", "{}")
    assert slow_server.received.is_set()
    assert (caught.value.kind, caught.value.may_have_arrived) == ("timeout", True)


def test_a_url_that_cannot_be_sent_to_did_not_arrive():
    client = HttpClient("webhooks", connect_timeout_seconds=1, total_timeout_seconds=1)
    with pytest.raises(TransportError) as caught:
        client.request("POST", "not a url", "{}")
    assert caught.value.may_have_arrived is False


class _Statuses(BaseHTTPRequestHandler):
    """Answers with the status the query names: /orders/12345?status=503 -> 503."""
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.send_response(int(self.path.rsplit("status=", 1)[1]))
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def status_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Statuses)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_provider_calls_are_timed_per_operation_without_ids_and_errors_counted_by_class(status_server):
    client = HttpClient("metricsprobe", status_server, connect_timeout_seconds=1, read_timeout_seconds=1)
    assert _sample("reconciler_provider_errors_total", provider="metricsprobe", **{"class": "http_5xx"}) == 0
    assert REGISTRY.get_sample_value("reconciler_provider_errors_total",  # the series exists before any error
                                     {"provider": "metricsprobe", "class": "timeout"}) == 0
    for order_id in ("4815000000044208", "77"):
        client.request("GET", f"/salesorders/{order_id}/open?organization_id=1&status=200")
    client.request("GET", "/api/balance?status=503")
    client.request("GET", "/api/orders?status=429")

    def count(operation: str) -> float:
        return _sample("reconciler_provider_request_duration_seconds_count", provider="metricsprobe",
                       operation=operation)
    assert count("GET /salesorders/{id}/open") == 2
    assert (count("GET /api/balance"), count("GET /api/orders")) == (1, 1)
    assert _sample("reconciler_provider_errors_total", provider="metricsprobe", **{"class": "http_5xx"}) == 1
    assert _sample("reconciler_provider_errors_total", provider="metricsprobe", **{"class": "http_429"}) == 1
    assert "4815000000044208" not in generate_latest().decode()


def test_a_call_that_got_no_answer_is_timed_and_counted_by_its_transport_error():
    client = HttpClient("metricsprobe2", f"http://127.0.0.1:{_closed_port()}", connect_timeout_seconds=1,
                        read_timeout_seconds=1)
    with pytest.raises(TransportError):
        client.request("POST", "/api/orders", "{}", operation="create_order")
    assert _sample("reconciler_provider_errors_total", provider="metricsprobe2", **{"class": "connection"}) == 1
    assert _sample("reconciler_provider_request_duration_seconds_count", provider="metricsprobe2",
                   operation="create_order") == 1


def test_webhook_endpoints_are_no_provider_and_get_no_provider_series(status_server):
    HttpClient("metricsprobe3", connect_timeout_seconds=1, read_timeout_seconds=1).request(
        "GET", f"{status_server}/hooks?status=500")
    assert 'provider="metricsprobe3"' not in generate_latest().decode()
