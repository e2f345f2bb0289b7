"""The daemon's HTTP listeners: the public one (`receiver.port`: provider webhooks, partner intake) and
the admin one (`admin.port`: metrics and probes), each a table of routes served as a WSGI app by waitress
from a daemon thread.

HTTP rules every route gets: a POST must say its Content-Length (411 otherwise), bodies over
`max_body_bytes` are refused unread (413), an unknown method on a known path is 405 with Allow, every
error is a JSON answer of one shape, `{"error": code, "message": text}` (waitress's own parse errors included),
a database outage is 503 with Retry-After,
and a client that has not sent a whole request within `request_deadline_seconds` is cut off (408).
Routes answer fast; real work happens in jobs.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Callable, Iterable, Mapping

from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, TransferEncodingNotImplemented
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask

from reconciler.engine.logs import RepeatedFailure

log = logging.getLogger(__name__)
# "Task queue depth is N" each time requests wait for a handler thread: normal under keep-alive load, and a
# line per request at WARNING would drown the log.
logging.getLogger("waitress.queue").setLevel(logging.ERROR)

REQUEST_DEADLINE_SECONDS = 10.0
# 8 measured 40-50% slower than 16 with 16 senders: more requests waited in waitress's queue, and on SQLite
# fewer inserts shared a commit. The PostgreSQL hot path pool keeps as many connections (HOT_POOL_SIZE).
HANDLER_THREADS = 16
RETRY_AFTER_SECONDS = 5
STOP_POLL_SECONDS = 0.1  # how soon the server's loop sees stop(); a request wakes it at once
DATABASE_DOWN = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    params: Mapping[str, str] = field(default_factory=dict)  # a path template's {name} segments


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, document: dict[str, Any], headers: tuple[tuple[str, str], ...] = ()) -> "Response":
        return cls(status, json.dumps(document).encode(), headers=headers)

    @classmethod
    def error(cls, status: int, code: str, message: str, headers: tuple[tuple[str, str], ...] = (),
              **details: Any) -> "Response":
        """Every error answer's one shape: a stable `code` a program can branch on, a `message` for a person,
        and any details (e.g. `fields`)."""
        return cls.json(status, {"error": code, "message": message, **details}, headers)


Route = Callable[[Request], Response]
Routes = dict[tuple[str, str], Route]
StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WsgiApp = Callable[[dict, StartResponse], Iterable[bytes]]


def wsgi_app(routes: Routes, max_body_bytes: int) -> WsgiApp:
    """The routing layer: a (method, path) table, where a path segment `{name}` matches any one segment, so a
    dozen routes need no framework."""
    table = _RouteTable(routes)
    outage = _Outage(RepeatedFailure(log, "database access from HTTP requests"))

    def answer(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        response = _respond(environ)
        start_response(f"{response.status} {_reason(response.status)}", [
            ("Content-Type", response.content_type), ("Content-Length", str(len(response.body))),
            *response.headers])
        return [response.body]

    def _respond(environ: dict) -> Response:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        found = table.find(path)
        if found is None:
            return Response.error(404, "not_found", f"no such resource: {path}")
        methods, params = found
        if method not in methods:
            return Response.error(405, "method_not_allowed", f"method {method} not allowed here",
                                  headers=(("Allow", ", ".join(sorted(methods))),))
        body = b""
        if method == "POST":
            length = environ.get("CONTENT_LENGTH")
            if not length:
                return Response.error(411, "length_required", "Content-Length required")
            body = environ["wsgi.input"].read(int(length))
        headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items()
                   if key.startswith("HTTP_")}
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if key in environ:
                headers[key.replace("_", "-").lower()] = environ[key]
        try:
            response = methods[method](Request(method, path, headers, body, params))
        except DATABASE_DOWN as exc:
            outage.failed(exc, hint=f"; answered 503 (first: {method} {path})")
            return Response.error(503, "database_unavailable", "database unavailable, retry later",
                                  headers=(("Retry-After", str(RETRY_AFTER_SECONDS)),))
        except Exception:
            log.exception("%s %s failed", method, path)
            return Response.error(500, "internal_error", "internal error")
        outage.succeeded()
        return response

    return answer


class _RouteTable:
    """Paths to their routes by method: exact paths looked up at once, templates matched segment by segment."""

    def __init__(self, routes: Routes) -> None:
        self.exact: dict[str, dict[str, Route]] = {}
        self.templates: dict[tuple[str, ...], dict[str, Route]] = {}
        for (method, path), route in routes.items():
            if "{" in path:
                self.templates.setdefault(tuple(path.split("/")), {})[method] = route
            else:
                self.exact.setdefault(path, {})[method] = route

    def find(self, path: str) -> tuple[dict[str, Route], dict[str, str]] | None:
        if path in self.exact:
            return self.exact[path], {}
        segments = path.split("/")
        for template, methods in self.templates.items():
            if len(template) == len(segments):
                params = _match(template, segments)
                if params is not None:
                    return methods, params
        return None


def _match(template: tuple[str, ...], segments: list[str]) -> dict[str, str] | None:
    params = {}
    for pattern, segment in zip(template, segments):
        if pattern.startswith("{") and pattern.endswith("}"):
            if not segment:
                return None
            params[pattern[1:-1]] = segment
        elif pattern != segment:
            return None
    return params


class _Outage:
    """RepeatedFailure for concurrent handler threads: a database outage is logged once, then as a count,
    then its end, not once per request."""

    def __init__(self, failure: RepeatedFailure) -> None:
        self._failure = failure
        self._lock = threading.Lock()

    def failed(self, exc: BaseException, hint: str) -> None:
        with self._lock:
            self._failure.failed(exc, hint=hint)

    def succeeded(self) -> None:
        if self._failure.failures:  # read without the lock: a request during no outage takes no lock
            with self._lock:
                self._failure.succeeded()


class _Parser(HTTPRequestParser):
    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        if self.chunked:  # a body is exactly Content-Length bytes, never a stream
            raise TransferEncodingNotImplemented("Transfer-Encoding is not accepted")


class _JsonErrorTask(ErrorTask):
    """waitress's answer to a request it could not parse (bad header, bad Content-Length, too large), in JSON.
    Its 501 for a Transfer-Encoding is our 411: send Content-Length instead."""

    def execute(self) -> None:
        error = self.request.error
        code, reason = (411, "Length Required") if error.code == 501 else (error.code, error.reason)
        body = json.dumps({"error": reason.lower().replace(" ", "_"), "message": f"{reason}: {error.body}"}).encode()
        self.status = f"{code} {reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Channel(HTTPChannel):
    parser_class = _Parser
    error_task_class = _JsonErrorTask
    request_started = 0.0

    def received(self, data: bytes) -> bool:
        if self.request is None and data:
            self.request_started = time.monotonic()
        return super().received(data)


_TIMED_OUT_BODY = json.dumps({"error": "request_timeout", "message": "request not sent in time"}).encode()
_TIMED_OUT = (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nConnection: close\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(_TIMED_OUT_BODY), _TIMED_OUT_BODY))


class _Server(TcpWSGIServer):
    channel_class = _Channel
    request_deadline = REQUEST_DEADLINE_SECONDS
    stopping = False

    def run(self) -> None:
        """waitress's loop, one poll at a time, until stop() says so: then the stopping thread closes the
        sockets once this loop no longer uses them."""
        while not self.stopping:
            wasyncore.loop(timeout=STOP_POLL_SECONDS, map=self._map, use_poll=self.adj.asyncore_use_poll, count=1)

    def maintenance(self, now: float) -> None:
        """waitress's idle cut-off restarts with every byte; this also cuts a request that is still coming
        in after the deadline, so a client trickling bytes cannot hold a connection (slow loris)."""
        super().maintenance(now)
        late = time.monotonic() - self.request_deadline
        for channel in list(self.active_channels.values()):
            if channel.request is not None and not channel.requests and channel.request_started < late:
                with channel.outbuf_lock:  # no task runs on this channel: nothing else writes to it
                    channel.outbufs[-1].append(_TIMED_OUT)
                    channel.total_outbufs_len += len(_TIMED_OUT)
                channel.request = None
                channel.close_when_flushed = True


class HttpListener:
    """One listener: `routes` served by waitress from a daemon thread of this process, on `port` (0: any free
    port, read back from .port). waitress rather than http.server: it parses requests strictly, answers what it
    cannot parse, buffers bodies before a handler thread sees them, and bounds threads and connections."""

    def __init__(self, host: str, port: int, max_body_bytes: int, routes: Routes | WsgiApp, *,
                 threads: int = HANDLER_THREADS, request_deadline_seconds: float = REQUEST_DEADLINE_SECONDS) -> None:
        """`routes`: the exact (method, path) table, or a WSGI app of its own (a fake provider whose paths hold
        ids) served with the same server rules."""
        adjustments = Adjustments(
            host=host, port=port, threads=threads, max_request_body_size=max_body_bytes + 1,
            channel_timeout=max(request_deadline_seconds, 1), cleanup_interval=min(request_deadline_seconds, 1),
            ident="reconciler", expose_tracebacks=False, clear_untrusted_proxy_headers=False)
        app = routes if callable(routes) else wsgi_app(routes, max_body_bytes)
        self.server = _Server(app, adj=adjustments)
        self.server.request_deadline = request_deadline_seconds
        self._thread = threading.Thread(target=self.server.run, name=f"http-{self.port}", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.effective_port)

    def start(self) -> "HttpListener":
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the server's loop, stop the handler threads, then close the listening socket and every
        connection."""
        self.server.stopping = True
        if self._thread.is_alive():
            self._thread.join()
        self.server.task_dispatcher.shutdown()
        wasyncore.close_all(self.server._map)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
