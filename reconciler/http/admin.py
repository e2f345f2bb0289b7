"""The admin listener (not for the internet): /metrics, /healthz (main loop alive), /readyz (database reachable,
schema current; a 503 says why not)."""
from __future__ import annotations

from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine

from reconciler.engine.db import database_error_cause
from reconciler.engine.migrate import schema_problem
from reconciler.http.listener import HttpListener, Request, Response

Probe = Callable[[], bool]
Readiness = Callable[[], "str | None"]  # None when ready, else why not
ADMIN_MAX_BODY_BYTES = 1024  # the admin listener takes no bodies


def database_not_ready(engine: Engine) -> str | None:
    """Why the daemon cannot work on this database now (unreachable, with the driver's cause; not migrated), or
    None."""
    try:
        return schema_problem(engine)
    except Exception as exc:
        return f"database unreachable: {database_error_cause(exc)}"


def admin_listener(host: str, port: int, alive: Probe, ready: Readiness) -> HttpListener:
    def metrics(_: Request) -> Response:
        return Response(200, generate_latest(), CONTENT_TYPE_LATEST)

    def probe(why_not: Readiness) -> Callable[[Request], Response]:
        def answer(_: Request) -> Response:
            reason = why_not()
            if reason is None:
                return Response(200, b"ok\n", "text/plain")
            return Response(503, f"not ready: {reason}\n".encode(), "text/plain")
        return answer

    return HttpListener(host, port, ADMIN_MAX_BODY_BYTES, threads=2, routes={
        ("GET", "/metrics"): metrics,
        ("GET", "/healthz"): probe(lambda: None if alive() else "the main loop has stopped"),
        ("GET", "/readyz"): probe(ready)})
