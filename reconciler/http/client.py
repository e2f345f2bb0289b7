"""The outbound client base every provider client and the webhook sender use.

What every call to another system needs, written once: keep-alive sessions kept between calls, connect and read (or
total) timeouts, redirects never followed, transport failures typed by whether the request may have reached
the other side, Retry-After read with one cap, and each call recorded for the api_calls audit (linked to the
order it was made for). What an answer *means* is the caller's business: provider quirks stay in the provider
client.
"""
from __future__ import annotations

import math
import os
import queue
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Callable, Mapping
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError
from urllib3.util import Timeout

from reconciler.http import metrics
from reconciler.http.audit import ApiCall

MAX_RETRY_AFTER_SECONDS = 3600.0  # a Retry-After beyond this (or unreadable as a time) is read as this long at most
AUDIT_BODY_LIMIT = 4000
_ID_SEGMENT = re.compile(r"^(?=.*\d)[^/]{8,}$|^\d+$")  # all digits, or 8+ characters with a digit: an id, not a word


@dataclass(frozen=True)
class OrderRef:
    """The order a call is made for, so the api_calls audit can be read per order."""

    table: str
    id: int


class TransportError(Exception):
    """No HTTP answer came. `may_have_arrived`: could the other side have received the request? Only a failure
    to connect (refused, DNS, connect timeout, a URL that cannot be sent to) proves it did not."""

    def __init__(self, kind: str, may_have_arrived: bool, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind  # connect_timeout, timeout, dns, connection, or the exception's name
        self.may_have_arrived = may_have_arrived
        self.detail = detail


@dataclass(frozen=True)
class Answer:
    status: int
    text: str  # the body, or its first `max_body_bytes` when the call asked for only that much
    headers: Mapping[str, str]
    latency_ms: int

    def retry_after_seconds(self) -> float | None:
        return parse_retry_after(self.headers.get("Retry-After"))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from Retry-After (a number of seconds or an HTTP date), at least 0 and at most
    MAX_RETRY_AFTER_SECONDS; None when absent or unreadable. `1e9` or `inf` means 'a long time', not 2058."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        seconds = (moment - (now or datetime.now(timezone.utc))).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def transport_error(exc: requests.RequestException) -> TransportError:
    """What a `requests` failure says about whether the request left this machine."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return TransportError("connect_timeout", False, "connect timeout")
    if isinstance(exc, requests.exceptions.Timeout):
        return TransportError("timeout", True, "timeout after sending")
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = exc.args[0].reason if exc.args and isinstance(exc.args[0], MaxRetryError) else None
        if isinstance(reason, NameResolutionError) or "resolve" in str(exc).lower():
            return TransportError("dns", False, f"cannot connect: {type(reason or exc).__name__}")
        if isinstance(reason, NewConnectionError):
            return TransportError("connection", False, f"cannot connect: {type(reason).__name__}")
        return TransportError("connection", True, f"connection lost: {type(exc).__name__}")
    # InvalidURL, MissingSchema, InvalidHeader, ...: refused before anything was sent
    return TransportError(type(exc).__name__, False, type(exc).__name__)


class HttpClient:
    """One provider's (or the webhook sender's) HTTP: `request` returns an Answer or raises TransportError."""

    def __init__(self, name: str, base_url: str = "", *, connect_timeout_seconds: float,
                 read_timeout_seconds: float | None = None,
                 total_timeout_seconds: float | None = None, headers: Mapping[str, str] | None = None,
                 audit: Callable[[ApiCall], None] | None = None,
                 before_request: Callable[[], None] | None = None) -> None:
        """`total_timeout_seconds` bounds the whole call (a peer trickling bytes cannot hold it longer);
        `read_timeout_seconds` bounds each wait for bytes. `before_request` runs before every call (a shared
        rate limit waits there). `base_url`: the one host this client talks to (a provider's API root), or
        empty when every call names its own URL (webhook endpoints)."""
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.timeout = Timeout(connect=connect_timeout_seconds, read=read_timeout_seconds,
                               total=total_timeout_seconds)
        self.headers = dict(headers or {})
        self.audit = audit
        self.before_request = before_request
        if self.base_url:  # a provider's API: its error series exist from the start, so rate() has data at once
            for kind in metrics.ERROR_CLASSES:
                metrics.PROVIDER_ERRORS.labels(name, kind)
        self._idle: queue.SimpleQueue[requests.Session] = queue.SimpleQueue()  # one session per concurrent call

    def request(self, method: str, url: str, body: str | bytes | None = None, *,
                headers: Mapping[str, str] | None = None, order: OrderRef | None = None,
                max_body_bytes: int | None = None, operation: str | None = None) -> Answer:
        """One call to `url` (a path is appended to base_url), never retried here: whether a retry is safe is
        the caller's knowledge. The audit records the request body, never a header, so keys and tokens cannot
        reach it. A provider's calls (a client with a base_url) are timed per `operation`, by default the method
        and the path with its ids replaced (`POST /salesorders/{id}/status/open`)."""
        if self.before_request is not None:
            self.before_request()
        operation = operation or operation_of(method, url)
        if url.startswith("/"):
            url = self.base_url + url
        started = time.perf_counter()
        answer: Answer | None = None
        error: str | None = None
        session = self._session()
        try:
            response = session.request(method, url, data=body, headers=headers, timeout=self.timeout,
                                       allow_redirects=False, stream=max_body_bytes is not None)
            with response:
                if max_body_bytes is None:
                    text = response.text
                else:
                    text = response.raw.read(max_body_bytes, decode_content=True).decode("utf-8", "replace")
            answer = Answer(response.status_code, text, response.headers, _elapsed_ms(started))
            return answer
        except requests.RequestException as exc:
            failure = transport_error(exc)
            error = failure.kind
            raise failure from None
        finally:
            self._idle.put(session)
            self._measure(operation, started, answer, error)
            if self.audit is not None:
                self.audit(ApiCall(
                    self.name, method, url, _text(body),
                    answer.status if answer else None, (answer.text[:AUDIT_BODY_LIMIT] or None) if answer else None,
                    error, _elapsed_ms(started), order.table if order else None, order.id if order else None))

    def _measure(self, operation: str, started: float, answer: Answer | None, error: str | None) -> None:
        if not self.base_url:  # webhook endpoints are no provider; their deliveries have metrics of their own
            return
        metrics.PROVIDER_REQUEST_DURATION.labels(self.name, operation).observe(time.perf_counter() - started)
        kind = error if answer is None else metrics.error_class(answer.status)
        if kind is not None:
            metrics.PROVIDER_ERRORS.labels(self.name, kind).inc()

    def _session(self) -> requests.Session:
        """An idle session, so its keep-alive connections outlive the thread that used it last (a job runs
        in a new thread each time); a new one when all are busy, since a session is not shared by threads."""
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            session = requests.Session()
            session.headers.update(self.headers)
            if self.base_url:
                # One host: the environment is read once here, not on every request. Proxies and a CA bundle
                # still apply, and ~/.netrc never adds credentials of its own to a provider's API.
                session.proxies = requests.utils.get_environ_proxies(self.base_url)
                session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
                session.trust_env = False
        return session


def operation_of(method: str, url: str) -> str:
    """`GET /api/orders` for a call: the method and the path without its query, each id-like segment written
    `{id}`, so a metric label never carries an order's id."""
    path = urlsplit(url).path or "/"
    return f"{method.upper()} " + "/".join("{id}" if _ID_SEGMENT.match(part) else part for part in path.split("/"))


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _text(body: str | bytes | None) -> str | None:
    if body is None:
        return None
    return body if isinstance(body, str) else body.decode("utf-8", "replace")
