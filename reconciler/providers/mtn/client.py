"""The MTN data-bundle reseller API. Every quirk of this provider lives here and nowhere else.

Quirks handled: PHP warnings or HTML before the JSON; order history as a bare array or under `data`
or `orders`; many words for one status; balance as a number or a numeric string; no idempotency key,
so every failure says whether the order may exist (`MtnInDoubt`) or certainly does not.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, Callable

from sqlalchemy import Engine

from reconciler.config import Config
from reconciler.coordination.rate_limits import RateLimit
from reconciler.engine.clock import Clock, utcnow
from reconciler.engine.logs import one_line
from reconciler.http.audit import ApiCall, AuditLog
from reconciler.http.client import Answer, HttpClient, OrderRef, TransportError
from reconciler.providers.mtn.phones import RecipientRejected, normalise_phone

PROVIDER = "mtn"
MAX_FIELD_CHARS = 200  # an order id, status word or timestamp is never near this long


class ResellerStatus(Enum):
    """What the reseller says of its own order, in three words of ours. Not an order status: an order moves
    on what the reseller says (providers.mtn.settlement), and the reseller's own word is kept as raw_status."""

    PROCESSING = "processing"
    DELIVERED = "delivered"
    FAILED = "failed"


STATUS_WORDS = {
    **dict.fromkeys(("success", "successful", "delivered", "fulfilled", "sent", "completed", "complete"),
                    ResellerStatus.DELIVERED),
    **dict.fromkeys(("error", "failed", "failure", "cancelled", "canceled", "rejected", "expired", "refunded"),
                    ResellerStatus.FAILED),
    **dict.fromkeys(("queued", "pending", "processing", "in_progress", "submitted", "accepted"),
                    ResellerStatus.PROCESSING),
}
_PLAN_SIZE = re.compile(r"(\d+)\s*GB", re.I)


class MtnError(Exception):
    """A call did not give a usable answer. `status_code` is None when no HTTP answer came."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


class MtnRejected(MtnError):
    """400/404 and other 4xx: the provider refused the order; it does not exist."""


class MtnUnauthorised(MtnError):
    """401/403: the API key is wrong or revoked."""


class MtnInsufficientBalance(MtnError):
    """402: the reseller account cannot pay for the order."""


class MtnRateLimited(MtnError):
    """429: slow down; no order was created. `retry_after_seconds` when the answer said how long."""

    def __init__(self, message: str, status_code: int | None = None,
                 retry_after_seconds: float | None = None) -> None:
        super().__init__(message, status_code)
        self.retry_after_seconds = retry_after_seconds


class MtnUnreachable(MtnError):
    """The request never reached the provider (refused, connect timeout, DNS): safe to try again."""


class MtnInDoubt(MtnError):
    """The request may have reached the provider (timeout or reset after sending, 5xx, an answer that
    cannot be read): the order may exist. Never resubmit before history proves it absent."""


@dataclass(frozen=True)
class ProviderOrder:
    id: str
    status: ResellerStatus
    raw_status: str      # the provider's own word
    recipient_phone: str
    network: str
    size_gb: int | None  # None when the entry does not say in a way we can read
    message: str
    created_at: datetime | None  # UTC; None when missing or unreadable
    updated_at: str


def canonical_status(word: object) -> ResellerStatus:
    """Unknown words count as still processing: only a known final word settles an order."""
    return STATUS_WORDS.get(str(word or "").strip().lower().replace(" ", "_").replace("-", "_"),
                            ResellerStatus.PROCESSING)


def parse_json(body: str) -> Any:
    """The JSON in a body that may start with PHP warnings or HTML: the value that runs to the end of
    the body (the noise is a prefix, and may itself hold brackets), else the first one that parses."""
    decoder = json.JSONDecoder(parse_float=_finite, parse_constant=_not_a_number)
    end = len(body.rstrip())
    first = None
    for index, char in enumerate(body):
        if char in "{[":
            try:
                value, stop = decoder.raw_decode(body, index)
            except ValueError:
                continue
            except RecursionError:
                raise ValueError("JSON nested too deeply") from None
            if stop == end:
                return value
            if first is None:
                first = (value,)
    if first is None:
        raise ValueError("no JSON in the response")
    return first[0]


def _finite(text: str) -> float:
    """1e999 is not a number any order has: refuse it rather than carry infinity around."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:20]}")
    return value


def _not_a_number(text: str) -> float:
    raise ValueError(f"{text} is not a number")


def history_entries(document: Any) -> list[dict]:
    """A bare array, or the list under `data` or `orders` (also nested: data.orders)."""
    if isinstance(document, list):
        return [e for e in document if isinstance(e, dict)]
    if isinstance(document, dict):
        for key in ("data", "orders"):
            if key in document:
                return history_entries(document[key])
    raise ValueError("order history in an unknown shape")


def parse_order(entry: dict) -> ProviderOrder:
    return ProviderOrder(
        id=str(entry.get("id") if entry.get("id") is not None else entry.get("order_id")),
        status=canonical_status(entry.get("status")), raw_status=str(entry.get("status") or ""),
        recipient_phone=_phone(entry.get("recipient_phone") or entry.get("phone")),
        network=str(entry.get("network") or ""), size_gb=_size_gb(entry),
        message=str(entry.get("message") or ""), created_at=_timestamp(entry.get("created_at")),
        updated_at=str(entry.get("updated_at") or ""))


def _phone(raw: object) -> str:
    """History may write 233241234567 or +233...; we compare 0XXXXXXXXX."""
    try:
        return normalise_phone(str(raw or ""))
    except RecipientRejected:
        return str(raw or "")


def _size_gb(entry: dict) -> int | None:
    """size_gb, or size_mb counted in 1024s or in 1000s, or the plan name ("MTN 5GB")."""
    try:
        if entry.get("size_gb") is not None:
            return int(entry["size_gb"])
        if entry.get("size_mb") is not None:
            size_mb = int(entry["size_mb"])
            return next((size_mb // unit for unit in (1024, 1000) if size_mb % unit == 0), None)
    except (TypeError, ValueError, OverflowError):
        return None
    match = _PLAN_SIZE.search(str(entry.get("plan_name") or ""))
    try:
        return int(match.group(1)) if match else None
    except ValueError:  # more digits than Python converts
        return None


def _timestamp(value: object) -> datetime | None:
    """ISO 8601 with or without a zone ("Z", "+00:00"), or "YYYY-MM-DD HH:MM:SS"; a zoneless time is UTC."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError):  # OverflowError: 9999-12-31T23:59-01:00 is past the last UTC year
        return None


class MtnClient:
    def __init__(self, base_url: str, api_key: str, timeout_seconds: float, connect_timeout_seconds: float = 5.0,
                 audit: Callable[[ApiCall], None] | None = None, before_request: Callable[[], None] | None = None) -> None:
        self.http = HttpClient(PROVIDER, base_url, connect_timeout_seconds=connect_timeout_seconds,
                               read_timeout_seconds=timeout_seconds, audit=audit, before_request=before_request,
                               headers={"X-API-KEY": api_key, "Accept": "application/json"})

    def create_order(self, phone: str, network: str, size_gb: int, order: OrderRef | None = None) -> str:
        """Place an order; the provider's order id. Raises a MtnError subclass saying what is known."""
        document = self._call("POST", "/api/orders", {"recipient_phone": phone, "network": network,
                                                       "size_gb": size_gb}, order)
        order_id = document.get("order_id") if isinstance(document, dict) else None
        if not (isinstance(document, dict) and document.get("success") is True and order_id is not None):
            raise MtnInDoubt(f"unexpected answer to an order: {_excerpt(document)}", 200)
        return str(order_id)

    def history(self) -> list[ProviderOrder]:
        return [parse_order(entry) for entry in history_entries(self._call("GET", "/api/orders"))]

    def balance(self) -> Decimal:
        document = self._call("GET", "/api/balance")
        try:
            return Decimal(str(document["balance"]).strip())
        except (KeyError, TypeError, InvalidOperation):
            raise MtnInDoubt(f"unreadable balance: {_excerpt(document)}", 200) from None

    def _call(self, method: str, path: str, payload: dict | None = None, order: OrderRef | None = None) -> Any:
        body = json.dumps(payload) if payload is not None else None
        try:
            answer = self.http.request(method, path, body, order=order,
                                       headers={"Content-Type": "application/json"} if body else None)
        except TransportError as exc:
            raise (MtnInDoubt if exc.may_have_arrived else MtnUnreachable)(exc.detail) from None
        return self._answer(answer)

    @staticmethod
    def _answer(answer: Answer) -> Any:
        status, text = answer.status, answer.text
        try:
            document = parse_json(text)
        except ValueError:
            document = None
        message = str(document.get("message", "")) if isinstance(document, dict) else _excerpt(text)
        if 200 <= status < 300:
            if document is None:
                raise MtnInDoubt(f"HTTP {status} without readable JSON: {_excerpt(text)}", status)
            return document
        if status in (401, 403):
            raise MtnUnauthorised(message or "bad API key", status)
        if status == 402:
            raise MtnInsufficientBalance(message or "insufficient balance", status)
        if status == 429:
            raise MtnRateLimited(message or "rate limited", status, answer.retry_after_seconds())
        if 400 <= status < 500:
            raise MtnRejected(message or f"HTTP {status}", status)
        raise MtnInDoubt(f"HTTP {status}: {message}", status)


@dataclass(frozen=True)
class WebhookEvent:
    order: ProviderOrder
    dedupe_key: str  # the same status change reported twice has the same key


def parse_webhook(body: bytes) -> WebhookEvent:
    """An `order.status_changed` event; ValueError when it is not one we can use or could not store (a NUL
    byte, which PostgreSQL text cannot hold; a lone surrogate; a field longer than MAX_FIELD_CHARS; a date
    out of range)."""
    if b"\x00" in body:
        raise ValueError("NUL byte in the body")
    document = parse_json(body.decode("utf-8", "replace"))
    order = document.get("order") if isinstance(document, dict) else None
    if not isinstance(order, dict) or order.get("id") is None:
        raise ValueError("no order in the webhook")
    parsed = parse_order(order)
    for name, value in (("id", parsed.id), ("status", parsed.raw_status), ("updated_at", parsed.updated_at)):
        _check_storable(name, value)
    if order.get("created_at") and parsed.created_at is None:
        raise ValueError("created_at is not a date we can read")
    key = f"{parsed.id}:{parsed.raw_status.lower()}:{parsed.updated_at or hashlib.sha256(body).hexdigest()}"
    return WebhookEvent(parsed, key)


def _check_storable(name: str, value: str) -> None:
    if len(value) > MAX_FIELD_CHARS:
        raise ValueError(f"{name} longer than {MAX_FIELD_CHARS} characters")
    if "\x00" in value:
        raise ValueError(f"NUL character in {name}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} holds a lone surrogate") from None


def _excerpt(value: object) -> str:
    return one_line(value, 200)


def mtn_client(config: Config, engine: Engine, clock: Clock = utcnow, audit: AuditLog | None = None) -> MtnClient:
    """The client as the daemon and the CLI use it, built from the config. `audit`: where calls are recorded;
    by default each is written at once."""
    settings = config.mtn
    limit = RateLimit.per_second(engine, PROVIDER, settings.requests_per_second, clock)
    return MtnClient(settings.base_url, settings.api_key, settings.request_timeout_seconds,
                     settings.connect_timeout_seconds, audit=audit or AuditLog(engine, clock),
                     before_request=limit.acquire if limit.limit > 0 else None)
