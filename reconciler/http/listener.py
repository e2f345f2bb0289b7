"""The daemon's HTTP listeners: the public one (`receiver.port`: provider webhooks, partner intake) and
the admin one (`admin.port`: metrics and probes), each a table of routes.

HTTP rules every route gets: a POST must say its Content-Length (411 otherwise), bodies over
`max_body_bytes` are refused unread (413), exactly Content-Length bytes are read, and a slow client
is cut off after a few seconds. Routes answer fast; real work happens in jobs.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

READ_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"

    @classmethod
    def json(cls, status: int, document: dict[str, Any]) -> "Response":
        return cls(status, json.dumps(document).encode())


Route = Callable[[Request], Response]


class HttpListener:
    def __init__(self, host: str, port: int, max_body_bytes: int, routes: dict[tuple[str, str], Route]) -> None:
        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True
            protocol_version = "HTTP/1.1"
            timeout = READ_TIMEOUT_SECONDS

            def do_GET(self) -> None:
                self._serve(b"")

            def do_POST(self) -> None:
                length = self.headers.get("Content-Length")
                if length is None or not length.isdigit():
                    return self._reply(Response.json(411, {"error": "Content-Length required"}), close=True)
                if int(length) > max_body_bytes:
                    return self._reply(Response.json(413, {"error": f"body over {max_body_bytes} bytes"}), close=True)
                body = self.rfile.read(int(length))
                if len(body) != int(length):
                    return self._reply(Response.json(400, {"error": "body shorter than Content-Length"}), close=True)
                self._serve(body)

            def _serve(self, body: bytes) -> None:
                path = self.path.split("?", 1)[0]
                route = routes.get((self.command, path))
                if route is None:
                    return self._reply(Response.json(404, {"error": "not found"}))
                headers = {k.lower(): v for k, v in self.headers.items()}
                self._reply(route(Request(self.command, path, headers, body)))

            def _reply(self, response: Response, close: bool = False) -> None:
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(response.body)))
                if close:  # the unread body must not be taken for the next request
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(response.body)

            def log_message(self, *args: object) -> None:  # probes and scrapes every few seconds: keep logs quiet
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name=f"http-{port}", daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> "HttpListener":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
