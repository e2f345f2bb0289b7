"""The listener over real sockets: every malformed request gets a JSON 4xx, never an empty reply; a database
outage is 503 with Retry-After; a client trickling bytes is cut off by the whole-request deadline."""
from __future__ import annotations

import json
import logging
import socket
import time

import pytest
from sqlalchemy.exc import OperationalError

from reconciler.http.listener import HttpListener, Request, Response

from tests.raw_http import exchange, read_answer

MAX_BODY = 1024


def echo(request: Request) -> Response:
    return Response.json(200, {"body": request.body.decode("latin-1"), "headers": request.headers})


def database_down(_: Request) -> Response:
    raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


def broken(_: Request) -> Response:
    raise RuntimeError("a bug")


def item(request: Request) -> Response:
    return Response.json(200, {"params": dict(request.params)})


@pytest.fixture
def listener():
    server = HttpListener("127.0.0.1", 0, MAX_BODY, {
        ("POST", "/echo"): echo, ("GET", "/echo"): echo, ("POST", "/down"): database_down, ("GET", "/broken"): broken,
        ("GET", "/items/{itemId}"): item, ("GET", "/items/{itemId}/parts/{part}"): item,
    }, request_deadline_seconds=1.0).start()
    yield server
    server.stop()


def post(path: str, headers: bytes, body: bytes = b"") -> bytes:
    return b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n" + body


@pytest.mark.parametrize("request_bytes, status", [
    (post("/echo", "Content-Length: ²\r\n".encode()), 400),
    (post("/echo", b"Content-Length: -5\r\n"), 400),
    (post("/echo", b"Content-Length: 3\r\nContent-Length: 4\r\n", b"abcd"), 400),
    (post("/echo", b""), 411),
    (post("/echo", b"Transfer-Encoding: chunked\r\n", b"3\r\nabc\r\n0\r\n\r\n"), 411),
    (post("/echo", b"Transfer-Encoding: gzip\r\n"), 411),
    (post("/echo", b"Content-Length: 999999\r\n"), 413),  # no body follows: refused unread
    (post("/echo", b"Bad Header\r\n"), 400),
    (b"GET /echo HTTP/1.1\r\nHost: x\r\n" + b"X-Long: " + b"a" * 300_000 + b"\r\n\r\n", 431),
    (b"\x00\xff garbage\r\n\r\n", 400),
    (b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
    (b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 404),
])
def test_a_malformed_request_gets_a_json_4xx(listener, request_bytes, status):
    code, headers, body = exchange(listener.port, request_bytes)
    assert code == status
    assert headers["content-type"] == "application/json" and set(json.loads(body)) == {"error", "message"}
    if status == 405:
        assert headers["allow"] == "GET, POST"


@pytest.mark.parametrize("path, status, params", [
    ("/items/A-1", 200, {"itemId": "A-1"}),
    ("/items/A-1/parts/7", 200, {"itemId": "A-1", "part": "7"}),
    ("/items/", 404, None),  # a template segment matches one non-empty segment
    ("/items/A/B", 404, None),
    ("/items/A-1/parts", 404, None),
    ("/itemsX/A-1", 404, None),
])
def test_a_path_template_segment_matches_one_segment_and_reaches_the_route(listener, path, status, params):
    code, _, body = exchange(listener.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert code == status
    assert json.loads(body)["params" if params is not None else "error"] == (params or "not_found")


def test_an_unknown_method_on_a_templated_path_is_405_with_allow(listener):
    code, headers, body = exchange(listener.port, b"DELETE /items/A-1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (code, headers["allow"], json.loads(body)["error"]) == (405, "GET", "method_not_allowed")


def test_non_ascii_header_bytes_reach_the_route_as_text(listener):
    code, _, body = exchange(listener.port, post("/echo", "Content-Length: 2\r\nX-Sig: sha256=é\u00ff\r\n"
                                                 .encode("latin-1"), b"hi"))
    assert code == 200
    assert json.loads(body)["headers"]["x-sig"] == "sha256=é\u00ff"


def test_exactly_content_length_bytes_are_read_and_the_connection_is_kept(listener):
    with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as conn:
        conn.sendall(post("/echo", b"Content-Length: 3\r\n", b"abc") + post("/echo", b"Content-Length: 2\r\n", b"de"))
        buffer = bytearray()
        assert [json.loads(read_answer(conn, buffer)[2])["body"] for _ in range(2)] == ["abc", "de"]


def test_a_database_outage_is_503_with_retry_after_logged_once_then_its_end(listener, caplog):
    caplog.set_level(logging.INFO, "reconciler.http.listener")
    for _ in range(3):
        code, headers, body = exchange(listener.port, post("/down", b"Content-Length: 2\r\n", b"{}"))
        assert (code, headers["retry-after"], json.loads(body)) == (503, "5", {
            "error": "database_unavailable", "message": "database unavailable, retry later"})
    assert exchange(listener.port, post("/echo", b"Content-Length: 2\r\n", b"{}"))[0] == 200
    assert exchange(listener.port, post("/echo", b"Content-Length: 2\r\n", b"{}"))[0] == 200
    assert [(r.levelname, r.getMessage().split(" in ")[0]) for r in caplog.records] == [
        ("WARNING", "database access from HTTP requests failed: ConnectionRefusedError: connection refused; "
                    "answered 503 (first: POST /down)"),
        ("INFO", "database access from HTTP requests works again after 3 failures")]


def test_a_failing_route_is_a_json_500_logged_through_logging(listener, caplog, capfd):
    with caplog.at_level(logging.ERROR, "reconciler.http.listener"):
        code, _, body = exchange(listener.port, b"GET /broken HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (code, json.loads(body)) == (500, {"error": "internal_error", "message": "internal error"})
    assert "RuntimeError: a bug" in caplog.text
    assert "Traceback" not in capfd.readouterr().err


def test_a_client_trickling_bytes_is_cut_off_at_the_deadline_and_others_are_served(listener):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as slow:
        slow.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        answer = b""
        for _ in range(40):  # one byte every 0.1 s: each byte is activity, only the whole-request deadline ends it
            code, _, _ = exchange(listener.port, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            assert code == 200
            try:
                slow.sendall(b"x")
            except OSError:
                break
            slow.settimeout(0.1)
            try:
                answer = slow.recv(4096)
                break
            except socket.timeout:
                continue
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < 3.5
