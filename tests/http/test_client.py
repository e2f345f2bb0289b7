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
