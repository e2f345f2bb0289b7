"""A real HTTP endpoint on 127.0.0.1 that records what it is sent and answers as a test tells it to."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    hang: threading.Event | None = None  # hold the request open until this is set


class Receiver:
    """`answer(received) -> Answer` decides each reply; `requests` keeps everything that arrived."""

    def __init__(self, answer: Callable[[Received], Answer] = lambda _: Answer()) -> None:
        self.answer = answer
        self.requests: list[Received] = []
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                receiver.requests.append(received)
                receiver.arrived.set()
                reply = receiver.answer(received)
                if reply.hang is not None:
                    reply.hang.wait(30)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                try:
                    self.wfile.write(reply.body)
                except BrokenPipeError:  # the sender gave up on a held answer, as the test meant it to
                    self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
