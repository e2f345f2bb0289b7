"""The Zoho Books API v3. Every quirk of Zoho lives here (and its OAuth in oauth.py) and nowhere else.

Every call: waits for room under `zoho.requests_per_minute` per `zoho.rate_window_seconds` for the whole
organisation (all replicas, coordination.rate_limits), counts against `zoho.requests_per_day`
(coordination.quotas), carries the shared access token (`Authorization: Zoho-oauthtoken ...`, one token for
all replicas, coordination.tokens) and `organization_id`, and checks Zoho's `code` as well as the HTTP status.
Quirks handled: a refused access token (HTTP 401, code 57, INVALID_OAUTHTOKEN) is refreshed once and the call
tried once more; 429 comes without Retry-After; the daily cap is a pause until the next day, and a 429 whose
`X-Rate-Limit-Remaining` is 0 means Zoho counts the day as used up; the published documents declare
`salesorder` an array while Zoho answers an object (both read); contact names must be unique in an
organisation; `reference_number` search may match more than the exact reference.

The client ends its own pauses once their cause is over (a token refresh that works ends "unauthorised", the
first call of a new day ends "daily_cap"); whether to call at all while "zoho" is paused is the caller's
decision.
"""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping
from urllib.parse import quote, urlencode

from sqlalchemy import Engine

from reconciler.config import ZohoConfig
from reconciler.coordination.pauses import Pauses
from reconciler.coordination.quotas import DailyQuota, next_day
from reconciler.coordination.rate_limits import RateLimit
from reconciler.coordination.tokens import TokenSlot, TokenUnavailable
from reconciler.engine.clock import Clock, utcnow
from reconciler.engine.logs import one_line
from reconciler.http.audit import ApiCall, AuditLog
from reconciler.http.client import Answer, HttpClient, OrderRef, TransportError
from reconciler.providers.zoho.errors import (
    ZohoAuthFailed, ZohoDailyCapReached, ZohoError, ZohoNotFound, ZohoRateLimited, ZohoRejected, ZohoUnavailable,
)
from reconciler.providers.zoho.metrics import (
    DAILY_REQUESTS_LIMIT, DAILY_REQUESTS_USED, RATE_LIMIT_WAITS, TOKEN_EXPIRY, ZOHO_CALLS,
)
from reconciler.providers.zoho.oauth import PAUSE_KEY, PROVIDER, UNAUTHORISED, ZohoOAuth, without_secrets

__all__ = ["SalesOrder", "ZohoClient", "ZohoUsage", "ZohoError", "ZohoAuthFailed", "ZohoRateLimited",
           "ZohoDailyCapReached", "ZohoRejected", "ZohoNotFound", "ZohoUnavailable"]

log = logging.getLogger(__name__)

DAILY_CAP = "daily_cap"
RATE_LIMIT_CODES = frozenset({43, 44, 45})
NOT_FOUND = 1002
INTERNAL_ERROR = 1000
NOT_AUTHORISED = 57
CONTACT_NAME_TAKEN = 3062
# A grant is stamped when taken, the call reaches Zoho a little later, and that delay varies: the window is
# counted this much longer, so Zoho, counting arrivals, never sees more than the limit in any window.
GRANT_MARGIN_SECONDS = 0.25


@dataclass(frozen=True)
class SalesOrder:
    salesorder_id: str
    salesorder_number: str
    reference_number: str
    status: str            # Zoho's own status word ("draft", "open", ...) — not an order status


@dataclass(frozen=True)
class ZohoUsage:
    """What `reconciler status` and the metrics show of the Zoho limits; never the token itself."""

    calls_this_window: int
    requests_per_window: int
    window_seconds: float
    calls_today: int
    requests_per_day: int
    token_expires_at: datetime | None


class ZohoClient:
    def __init__(self, config: ZohoConfig, engine: Engine, worker_id: str, *, clock: Clock = utcnow,
                 audit: AuditLog | None = None, stop: threading.Event | None = None) -> None:
        """`stop`: set when the daemon shuts down, so a call waiting for rate-limit room gives up at once."""
        self.config = config
        self.organization_id = config.organization_id
        self.clock = clock
        self.stop = stop or threading.Event()
        self.pauses = Pauses(engine)
        key = f"{PROVIDER}:{config.organization_id}"
        self.rate_limit = RateLimit(engine, key, config.requests_per_minute,
                                    config.rate_window_seconds + GRANT_MARGIN_SECONDS, clock)
        self.daily = DailyQuota(engine, key, config.requests_per_day, clock)
        recorder = audit or AuditLog(engine, clock)

        def record(call: ApiCall) -> None:
            recorder(without_secrets(call))

        self.tokens = TokenSlot(engine, PAUSE_KEY, worker_id, ZohoOAuth(config, self.pauses, clock, record).refresh,
                                refresh_ahead_seconds=config.token_refresh_ahead_seconds,
                                lease_seconds=config.connect_timeout_seconds + config.request_timeout_seconds + 5,
                                clock=clock)
        self.http = HttpClient(PROVIDER, config.api_url, connect_timeout_seconds=config.connect_timeout_seconds,
                               read_timeout_seconds=config.request_timeout_seconds, audit=record,
                               headers={"Accept": "application/json"})
        DAILY_REQUESTS_LIMIT.set(config.requests_per_day)

    # the calls the flow makes

    def find_contact_by_email(self, email: str, *, order: OrderRef | None = None) -> str | None:
        """The contact_id of the customer whose primary contact has this email (case ignored), or None."""
        document = self._call("find_contact", "GET", "/contacts", {"email": email}, order=order)
        wanted = email.strip().lower()
        return next((str(c["contact_id"]) for c in _list(document, "contacts")
                     if str(c.get("email") or "").strip().lower() == wanted and c.get("contact_id")), None)

    def create_contact(self, name: str, email: str, phone: str | None, *, order: OrderRef | None = None) -> str:
        """A new customer; its contact_id. Zoho wants contact names unique in the organisation: a name already
        taken by another customer is made unique with the email."""
        person = {"first_name": name, "email": email, "is_primary_contact": True, **({"phone": phone} if phone else {})}
        payload = {"contact_name": name, "contact_type": "customer", "contact_persons": [person]}
        try:
            document = self._call("create_contact", "POST", "/contacts", body=payload, order=order)
        except ZohoRejected as exc:
            if exc.code != CONTACT_NAME_TAKEN:
                raise
            payload["contact_name"] = f"{name} ({email})"
            document = self._call("create_contact", "POST", "/contacts", body=payload, order=order)
        contact = document.get("contact")
        if not isinstance(contact, dict) or not contact.get("contact_id"):
            raise ZohoUnavailable(f"a created contact without contact_id: {one_line(document, 200)}",
                                  may_have_arrived=True)
        return str(contact["contact_id"])

    def find_salesorder(self, reference_number: str, *, order: OrderRef | None = None) -> SalesOrder | None:
        """The sales order whose reference_number is exactly this (Zoho's search may return near matches);
        with several (a double submission), the first created, and a warning."""
        document = self._call("find_salesorder", "GET", "/salesorders", {"reference_number": reference_number},
                              order=order)
        found = sorted((_salesorder(entry) for entry in _list(document, "salesorders")
                        if str(entry.get("reference_number") or "") == reference_number),
                       key=lambda so: (len(so.salesorder_id), so.salesorder_id))
        if len(found) > 1:
            log.warning("zoho: %d sales orders carry reference %s (%s); using %s", len(found), reference_number,
                        ", ".join(so.salesorder_number for so in found), found[0].salesorder_number)
        return found[0] if found else None

    def create_salesorder(self, customer_id: str, item_id: str, rate: float, reference_number: str, *,
                          order: OrderRef | None = None) -> SalesOrder:
        """A draft sales order of one licence. A ZohoUnavailable with may_have_arrived leaves it in doubt:
        look for it with find_salesorder before creating again."""
        payload = {"customer_id": customer_id, "reference_number": reference_number,
                   "line_items": [{"item_id": item_id, "rate": rate, "quantity": 1}]}
        document = self._call("create_salesorder", "POST", "/salesorders", body=payload, order=order)
        entry = _one(document.get("salesorder"))
        if entry is None or not entry.get("salesorder_id"):
            raise ZohoUnavailable(f"a created sales order without salesorder_id: {one_line(document, 200)}",
                                  may_have_arrived=True)
        return _salesorder(entry)

    def mark_open(self, salesorder_id: str, *, order: OrderRef | None = None) -> None:
        self._call("mark_open", "POST", f"/salesorders/{quote(salesorder_id, safe='')}/status/open", order=order)

    def organisation(self) -> str:
        """The organisation's name: one cheap call that proves the credentials, data centre and organisation
        (`check-config --connect`)."""
        document = self._call("organisation", "GET", f"/organizations/{quote(self.organization_id, safe='')}")
        organisation = document.get("organization")
        return str(organisation.get("name") or self.organization_id) if isinstance(organisation, dict) \
            else self.organization_id

    def usage(self, now: datetime) -> ZohoUsage:
        """Calls in the current rate window and today, the limits, and when the shared token expires."""
        usage = ZohoUsage(self.rate_limit.in_window(now), self.config.requests_per_minute,
                          self.config.rate_window_seconds, self.daily.used(now), self.config.requests_per_day,
                          self.tokens.expires_at())
        DAILY_REQUESTS_USED.set(usage.calls_today)
        if usage.token_expires_at is not None:
            TOKEN_EXPIRY.set(usage.token_expires_at.timestamp())
        return usage

    # one call

    def _call(self, operation: str, method: str, path: str, params: Mapping[str, str] | None = None, *,
              body: dict | None = None, order: OrderRef | None = None) -> dict[str, Any]:
        try:
            document = self._call_once_refreshed(method, path, params, body, order)
        except ZohoError as exc:
            ZOHO_CALLS.labels(operation, _result(exc)).inc()
            raise
        ZOHO_CALLS.labels(operation, "ok").inc()
        return document

    def _call_once_refreshed(self, method: str, path: str, params: Mapping[str, str] | None, body: dict | None,
                             order: OrderRef | None) -> dict[str, Any]:
        """The call; when Zoho refuses the access token, once more with a new one."""
        url = f"{path}?{urlencode({'organization_id': self.organization_id, **(params or {})})}"
        data = json.dumps(body) if body is not None else None
        for attempt in (1, 2):
            token = self._token()
            self._take_call()
            try:
                answer = self.http.request(method, url, data, order=order, headers={
                    "Authorization": f"Zoho-oauthtoken {token}",
                    **({"Content-Type": "application/json"} if data is not None else {})})
            except TransportError as exc:
                raise ZohoUnavailable(f"Zoho Books: {exc.detail}", may_have_arrived=exc.may_have_arrived) from None
            document = _document(answer)
            if not _token_refused(answer, document):
                return self._checked(answer, document)
            self.tokens.invalidate(token)
        raise self._unauthorised(answer, document)

    def _token(self) -> str:
        try:
            return self.tokens.token()
        except TokenUnavailable as exc:
            raise ZohoUnavailable(str(exc), may_have_arrived=False) from None

    def _take_call(self) -> None:
        """Count the call against the day, then wait for room in the rate window: the grant is taken last, so
        the call leaves as soon after it as it can (GRANT_MARGIN_SECONDS)."""
        use = self.daily.take()
        DAILY_REQUESTS_USED.set(use.used)
        if not use.taken:
            raise self._daily_cap(f"zoho.requests_per_day ({self.config.requests_per_day}) used up")
        if use.used == 1:  # the first call of a new day ends yesterday's pause
            self.pauses.resume(PAUSE_KEY, self.clock(), reason=DAILY_CAP)
        while (wait := self.rate_limit.try_acquire()) > 0:
            RATE_LIMIT_WAITS.inc()
            if self.stop.wait(wait):
                raise ZohoUnavailable("shutting down while waiting for Zoho rate-limit room", may_have_arrived=False)

    def _checked(self, answer: Answer, document: dict[str, Any] | None) -> dict[str, Any]:
        """Zoho's answer read by its HTTP status and its `code`."""
        code = document.get("code") if document is not None else None
        message = one_line(document.get("message") or "", 300) if document is not None else ""
        if answer.status == 429 or code in RATE_LIMIT_CODES:
            if answer.headers.get("X-Rate-Limit-Remaining") == "0":
                self.daily.exhaust()
                raise self._daily_cap(f"Zoho says the day's API calls are used up ({message or 'HTTP 429'})")
            retry_at = self.clock() + timedelta(seconds=self.config.rate_window_seconds)
            raise ZohoRateLimited(f"Zoho rate limit: {message or 'HTTP 429'}", retry_at)
        if answer.status >= 500 or code == INTERNAL_ERROR:
            raise ZohoUnavailable(f"Zoho Books HTTP {answer.status}: {message or one_line(answer.text, 200)}",
                                  may_have_arrived=True)
        if document is None or not isinstance(code, int):
            if answer.status < 400:
                raise ZohoUnavailable(f"Zoho Books HTTP {answer.status} without a readable answer: "
                                      f"{one_line(answer.text, 200)}", may_have_arrived=True)
            raise ZohoRejected(f"Zoho Books HTTP {answer.status}: {one_line(answer.text, 200)}", None)
        if code == NOT_FOUND:
            raise ZohoNotFound(message or "not found", code)
        if code != 0 or answer.status >= 400:
            raise ZohoRejected(message or f"Zoho code {code}", code)
        return document

    def _daily_cap(self, why: str) -> ZohoDailyCapReached:
        now = self.clock()
        until = next_day(now)
        pause = self.pauses.get(PAUSE_KEY)
        if not (pause.reason == DAILY_CAP and pause.paused_until == until):
            self.pauses.pause(PAUSE_KEY, DAILY_CAP, until, now, detail=why)
            log.warning("zoho: %s; the Zoho flow is paused until %s (the next UTC day)", why, until.isoformat())
        return ZohoDailyCapReached(f"{why}; the Zoho flow is paused until {until.isoformat()}", until)

    def _unauthorised(self, answer: Answer, document: dict[str, Any] | None) -> ZohoAuthFailed:
        """A fresh token refused too: the credentials lack the right (scope, organisation), not a stale token."""
        now = self.clock()
        until = now + timedelta(seconds=self.config.auth_pause_seconds)
        message = one_line((document or {}).get("message") or answer.text, 200)
        detail = f"Zoho refused a freshly refreshed access token (HTTP {answer.status}: {message})"
        self.pauses.pause(PAUSE_KEY, UNAUTHORISED, until, now, detail=detail)
        log.error("zoho: %s; the Zoho flow is paused until %s (zoho.auth_pause_seconds). Check the refresh token's "
                  "scopes and zoho.organization_id, then `reconciler resume zoho`", detail, until.isoformat())
        return ZohoAuthFailed(f"{detail}; the Zoho flow is paused until {until.isoformat()}")


def _document(answer: Answer) -> dict[str, Any] | None:
    try:
        document = json.loads(answer.text)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _token_refused(answer: Answer, document: dict[str, Any] | None) -> bool:
    code = document.get("code") if document is not None else None
    return answer.status == 401 or code == NOT_AUTHORISED or "INVALID_OAUTHTOKEN" in answer.text


def _list(document: dict[str, Any], key: str) -> list[dict[str, Any]]:
    entries = document.get(key)
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def _one(value: Any) -> dict[str, Any] | None:
    """A sales order as Zoho answers it (an object), or as its documents declare it (an array of one)."""
    if isinstance(value, list):
        value = value[0] if len(value) == 1 else None
    return value if isinstance(value, dict) else None


def _salesorder(entry: Mapping[str, Any]) -> SalesOrder:
    return SalesOrder(str(entry.get("salesorder_id") or ""), str(entry.get("salesorder_number") or ""),
                      str(entry.get("reference_number") or ""), str(entry.get("status") or ""))


def _result(exc: ZohoError) -> str:
    for kind, result in ((ZohoNotFound, "not_found"), (ZohoRejected, "rejected"), (ZohoRateLimited, "rate_limited"),
                         (ZohoDailyCapReached, "daily_cap"), (ZohoAuthFailed, "auth_failed")):
        if isinstance(exc, kind):
            return result
    return "unavailable"

