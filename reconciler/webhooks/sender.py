"""POST one signed webhook and say what happened, as a receiver would see it.

Redirects are not followed (a 3xx is a failure); connect and total time are bounded; 429 and 503 carry their
Retry-After. Only 2xx is success.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from reconciler.http.client import HttpClient, TransportError

EXCERPT_BYTES = 512


def undeliverable(url: str) -> str | None:
    """Why no attempt could ever reach `url` (not http/https, no host, a bad port), or None: such an event is
    dead at once instead of spending its retry schedule."""
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError on a port that is no number or out of range
    except ValueError as exc:
        return f"webhook URL {url!r} is not a URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return f"webhook URL {url!r} is not an http or https URL"
    if not parts.hostname:
        return f"webhook URL {url!r} names no host"
    return None


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None
    latency_ms: int
    error_class: str | None  # None when delivered
    response_excerpt: str
    retry_after_seconds: float | None = None

    @property
    def delivered(self) -> bool:
        return self.error_class is None


class WebhookSender:
    def __init__(self, connect_timeout_seconds: float, timeout_seconds: float) -> None:
        # total, not per-read: an endpoint trickling bytes cannot hold a delivery past the limit
        self.http = HttpClient("webhooks", connect_timeout_seconds=connect_timeout_seconds,
                               total_timeout_seconds=timeout_seconds,
                               headers={"Content-Type": "application/json", "User-Agent": "reconciler-webhooks"})

    def send(self, url: str, body: bytes, headers: dict[str, str]) -> AttemptResult:
        started = time.perf_counter()
        try:
            answer = self.http.request("POST", url, body, headers=headers, max_body_bytes=EXCERPT_BYTES)
        except TransportError as exc:
            return AttemptResult(None, int((time.perf_counter() - started) * 1000), exc.kind, "")
        status = answer.status
        retry_after = answer.retry_after_seconds() if status in (429, 503) else None
        return AttemptResult(status, answer.latency_ms, classify(status), answer.text, retry_after)


def classify(status: int) -> str | None:
    if 200 <= status < 300:
        return None
    if status == 410:
        return "gone"
    if status == 429:
        return "rate_limited"
    return f"http_{status // 100}xx"
