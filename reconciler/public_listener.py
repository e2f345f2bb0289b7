"""The public listener (`receiver.port`): provider webhooks and, later, the partner intake API.

HTTP rules every route gets: a POST must say its Content-Length (411 otherwise), bodies over
`receiver.max_body_bytes` are refused unread (413), exactly Content-Length bytes are read, and a
slow client is cut off after a few seconds. Routes answer fast; real work happens in jobs.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
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
    document: dict[str, Any] = field(default_factory=dict)


Route = Callable[[Request], Response]


class PublicListener:
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
                    return self._reply(Response(411, {"error": "Content-Length required"}), close=True)
                if int(length) > max_body_bytes:
                    return self._reply(Response(413, {"error": f"body over {max_body_bytes} bytes"}), close=True)
                body = self.rfile.read(int(length))
                if len(body) != int(length):
                    return self._reply(Response(400, {"error": "body shorter than Content-Length"}), close=True)
                self._serve(body)

            def _serve(self, body: bytes) -> None:
                path = self.path.split("?", 1)[0]
                route = routes.get((self.command, path))
                if route is None:
                    return self._reply(Response(404, {"error": "not found"}))
                headers = {k.lower(): v for k, v in self.headers.items()}
                self._reply(route(Request(self.command, path, headers, body)))

            def _reply(self, response: Response, close: bool = False) -> None:
                payload = json.dumps(response.document).encode()
                self.send_response(response.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                if close:  # the unread body must not be taken for the next request
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="public-http", daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> "PublicListener":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
