"""`POST /api/webhook/mtn`: verify the reseller's signature over the raw bytes, keep the event, answer.

The event is stored before the 2xx and deduplicated; applying it to the order is a job's work.
A bad or missing signature gets 401 and is never applied; the body is kept, closed with why
(signature_valid false), once however often the same body comes.
"""
from __future__ import annotations

import functools
import logging
from typing import Any

from sqlalchemy import Engine

from reconciler.engine import metrics
from reconciler.engine.clock import Clock, utcnow
from reconciler.engine.inbound import store_inbound, store_refused
from reconciler.http.listener import Request, Response, Route
from reconciler.providers.mtn.client import PROVIDER, parse_webhook
from reconciler.webhooks.signing import verify_sha256_signature

log = logging.getLogger(__name__)
RESULTS = ("stored", "duplicate", "bad_signature", "bad_request", "not_configured")


def mtn_webhook_route(engine: Engine, secret: str, clock: Clock = utcnow) -> Route:
    def receive(request: Request) -> Response:
        if not secret:
            log.error("MTN webhook refused: mtn.webhook_secret is not set")
            return _counted(Response.error(503, "not_configured", "webhook secret not configured"), "not_configured")
        signature = request.headers.get("x-webhook-signature")
        if not verify_sha256_signature(secret, request.body, signature):
            store_refused(engine, PROVIDER, request.body, "bad signature" if signature else "missing signature",
                          clock())
            return _counted(Response.error(401, "bad_signature", "bad or missing signature"), "bad_signature")
        try:
            event = parse_webhook(request.body)
        except ValueError as exc:
            return _counted(Response.error(400, "bad_request", str(exc)), "bad_request")
        stored = store_inbound(engine, PROVIDER, event.dedupe_key, request.body.decode("utf-8", "replace"),
                               event.order.id, clock())
        return _counted(_STORED if stored else _DUPLICATE, "stored" if stored else "duplicate")

    return receive


_STORED = Response.json(200, {"ok": True, "duplicate": False})
_DUPLICATE = Response.json(200, {"ok": True, "duplicate": True})


def _counted(response: Response, result: str) -> Response:
    _counter(result).inc()
    return response


@functools.cache
def _counter(result: str) -> Any:
    """The labelled counter looked up once per result, not per request."""
    return metrics.INBOUND_WEBHOOKS.labels(PROVIDER, result)


for _result in RESULTS:  # every verdict's series from the start, at 0
    _counter(_result)
