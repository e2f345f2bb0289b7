"""The admin listener (not for the internet): /metrics, /healthz (main loop alive), /readyz (database up)."""
from __future__ import annotations

from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine, text

from reconciler.http.listener import HttpListener, Request, Response

Probe = Callable[[], bool]
ADMIN_MAX_BODY_BYTES = 1024  # the admin listener takes no bodies


def database_reachable(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


def admin_listener(host: str, port: int, alive: Probe, ready: Probe) -> HttpListener:
    def metrics(_: Request) -> Response:
        return Response(200, generate_latest(), CONTENT_TYPE_LATEST)

    def probe(check: Probe) -> Callable[[Request], Response]:
        def answer(_: Request) -> Response:
            return Response(200, b"ok\n", "text/plain") if check() else Response(503, b"unavailable\n", "text/plain")
        return answer

    return HttpListener(host, port, ADMIN_MAX_BODY_BYTES, threads=2, routes={
        ("GET", "/metrics"): metrics, ("GET", "/healthz"): probe(alive), ("GET", "/readyz"): probe(ready)})
