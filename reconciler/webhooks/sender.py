"""POST one signed webhook and say what happened, as a receiver would see it.

Redirects are not followed (a 3xx is a failure); connect and total time are bounded; 429 and 503
carry their Retry-After. Only 2xx is success.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import requests
from urllib3.util import Timeout

EXCERPT_BYTES = 512
MAX_RETRY_AFTER_SECONDS = 24 * 3600


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
        self.timeouts = Timeout(connect=connect_timeout_seconds, total=timeout_seconds)
        self.session = requests.Session()

    def send(self, url: str, body: bytes, headers: dict[str, str]) -> AttemptResult:
        started = time.perf_counter()
        try:
            response = self.session.post(
                url, data=body, timeout=self.timeouts, allow_redirects=False, stream=True,
                headers={**headers, "Content-Type": "application/json", "User-Agent": "reconciler-webhooks"})
            with response:
                excerpt = response.raw.read(EXCERPT_BYTES, decode_content=True).decode("utf-8", "replace")
        except requests.exceptions.ConnectTimeout:
            return self._failed(started, "connect_timeout")
        except requests.exceptions.Timeout:
            return self._failed(started, "timeout")
        except requests.exceptions.ConnectionError as exc:
            return self._failed(started, "dns" if "resolve" in str(exc).lower() else "connection")
        except requests.exceptions.RequestException as exc:
            return self._failed(started, type(exc).__name__)
        status = response.status_code
        latency_ms = int((time.perf_counter() - started) * 1000)
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if status in (429, 503) else None
        return AttemptResult(status, latency_ms, classify(status), excerpt, retry_after)

    @staticmethod
    def _failed(started: float, error_class: str) -> AttemptResult:
        return AttemptResult(None, int((time.perf_counter() - started) * 1000), error_class, "")


def classify(status: int) -> str | None:
    if 200 <= status < 300:
        return None
    if status == 410:
        return "gone"
    if status == 429:
        return "rate_limited"
    return f"http_{status // 100}xx"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)
