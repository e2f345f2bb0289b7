"""A real OAuth token endpoint on 127.0.0.1 that counts its calls, and a `refresh` callable using it."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from reconciler.coordination.tokens import IssuedToken


class TokenRequestRefused(Exception):
    """The token server answered with an error (as a refresh callable would raise it)."""


class TokenServer:
    """POST /oauth/v2/token answers `tok-<n>` (n counts the calls) after `delay_seconds`, so racing
    callers overlap; with `refuse` set it answers as Zoho does for a bad refresh token (HTTP 200)."""

    def __init__(self) -> None:
        self.delay_seconds = 0.0
        self.refuse = False
        self.calls = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/oauth/v2/token":
                    self.send_error(404)
                    return
                with server._lock:
                    server.calls += 1
                    n = server.calls
                time.sleep(server.delay_seconds)
                body = json.dumps({"error": "invalid_code"} if server.refuse else {
                    "access_token": f"tok-{n}", "expires_in": 3600, "api_domain": "https://www.zohoapis.com",
                    "token_type": "Bearer"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/oauth/v2/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def fetch_token(url: str) -> IssuedToken:
    answer = requests.post(url, data={"refresh_token": "r", "client_id": "c", "client_secret": "s",
                                      "grant_type": "refresh_token"}, timeout=10)
    answer.raise_for_status()
    body = answer.json()
    if "error" in body:
        raise TokenRequestRefused(body["error"])
    return IssuedToken(body["access_token"], float(body["expires_in"]))
