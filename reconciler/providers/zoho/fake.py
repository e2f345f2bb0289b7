"""A fake Zoho: the accounts server (`POST /oauth/v2/token`) and the Books API v3 (`/books/v3`: organisations,
contacts, items, sales orders) in one real HTTP server (waitress, as the daemon's listeners) on 127.0.0.1, for
the demo and the tests.

It keeps Zoho's rules: an access token lives `token_expires_in` seconds and only the 10 newest stay valid; at
most 10 token requests per 10 minutes, then `Access Denied`; `requests_per_minute` API calls per organisation
in any `rate_window_seconds` (a sliding window, counted over the calls it let through) and `requests_per_day`
per day of the organisation's time zone, each refused with HTTP 429 and no Retry-After; `X-Rate-Limit-Limit/-Remaining/-Reset` on every API
answer describe the day's cap. Every fault of `ZohoFaults` can be set while it runs.

An `inspector` (the tests pass one that holds each request and answer to Zoho's OpenAPI documents) sees every
request before it is served and every answer it sends; a request it refuses is answered as Zoho would (400
with a code) and served no further. Without one (the demo) nothing is checked.
"""
from __future__ import annotations

import json
import re
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import Any, Iterable, Protocol
from urllib.parse import parse_qsl

from reconciler.config import DEFAULT_PRODUCTS, env_var_for
from reconciler.engine.clock import Clock, utcnow
from reconciler.http.listener import HttpListener, StartResponse

API_ROOT = "/books/v3"
TOKEN_PATH = "/oauth/v2/token"
ORGANIZATION_ID = "10234695"
VALID_TOKENS = 10                 # Zoho keeps only the newest access tokens of a refresh token valid
TOKEN_REQUESTS_WINDOW = timedelta(minutes=10)
NOT_AUTHORISED = {"code": 57, "message": "You are not authorized to perform this operation"}
INVALID_OAUTHTOKEN = {"code": 14, "message": "INVALID_OAUTHTOKEN: the access token is invalid or expired"}
PER_MINUTE_LIMIT = {"code": 44, "message": "You have made too many requests. Please try again after some time."}
DAILY_LIMIT = {"code": 45, "message": "You have exceeded the maximum number of API calls allowed for the day."}
INTERNAL_ERROR = {"code": 1000, "message": "Internal error. Please try again after some time."}
ACCESS_DENIED = {"error": "Access Denied",
                 "error_description": "You have made too many requests continuously. Please try again after some time.",
                 "status": "failure"}
MAX_BODY_BYTES = 1_000_000


@dataclass
class ZohoFaults:
    """What the fake does wrong, or how strict it is. Counters (`refuse_tokens`, `rate_limit_429`, ...) apply
    to the next N calls of their kind and count down."""

    token_expires_in: int = 3600              # seconds an access token lives
    refresh_refusal: str | None = None        # "invalid_code": HTTP 200 {"error":"invalid_code"} (a bad refresh
    #                                           token); "access_denied": Access Denied, see access_denied_status
    access_denied_status: int = 400           # Zoho sends Access Denied with 400, and also with 200
    token_requests_per_10_minutes: int = 10   # more token requests than this -> Access Denied
    refuse_tokens: int = 0                    # the next N API calls are refused as with a revoked access token
    refused_token_answer: str = "code_57"     # "code_57" or "invalid_oauthtoken": how a refused token is told
    rate_limit_429: int = 0                   # the next N API calls get 429 (no Retry-After), under the limit too
    requests_per_minute: int = 100            # per organisation, in any rate_window_seconds
    rate_window_seconds: float = 60.0
    requests_per_day: int = 1000              # per organisation per day (the free plan's cap)
    utc_offset_hours: float = 0.0             # the organisation's time zone: its day ends at its midnight
    error_5xx: int = 0                        # the next N API calls answer error_5xx_status, nothing done
    error_5xx_status: int = 500
    timeout_after_create: int = 0             # the next N sales orders are created, then not answered in time
    timeout_hold_seconds: float = 30.0        # how long such an answer is held; more than the client's timeout

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}, got {getattr(self, name)!r}")


_CHOICES = {"refresh_refusal": (None, "invalid_code", "access_denied"),
            "refused_token_answer": ("code_57", "invalid_oauthtoken")}


@dataclass(frozen=True)
class ZohoRequest:
    """One request as the fake (and its inspector) sees it."""

    method: str
    path: str                         # the whole path, e.g. /books/v3/salesorders
    query: tuple[tuple[str, str], ...]
    headers: dict[str, str]           # lower-case names
    body: bytes
    content_type: str

    def param(self, name: str) -> str | None:
        return next((value for key, value in self.query if key == name), None)


class Inspector(Protocol):
    def check_request(self, request: ZohoRequest) -> str | None:
        """None when the request is one Zoho documents, else what is wrong (the 400's message says so)."""

    def check_response(self, request: ZohoRequest, status: int, body: bytes) -> None:
        """Look at the answer the fake is about to send."""


@dataclass
class _Answer:
    status: int
    document: dict[str, Any]
    hold_seconds: float = 0.0
    headers: list[tuple[str, str]] = field(default_factory=list)


_API_ROUTES: list[tuple[str, re.Pattern, str]] = [
    (method, re.compile(f"^{API_ROOT}{pattern}$"), name) for method, pattern, name in (
        ("GET", r"/organizations/(?P<id>[^/]+)", "get_organization"),
        ("GET", r"/contacts", "list_contacts"),
        ("POST", r"/contacts", "create_contact"),
        ("GET", r"/items", "list_items"),
        ("GET", r"/items/(?P<id>[^/]+)", "get_item"),
        ("GET", r"/salesorders", "list_sales_orders"),
        ("POST", r"/salesorders", "create_sales_order"),
        ("GET", r"/salesorders/(?P<id>[^/]+)", "get_sales_order"),
        ("POST", r"/salesorders/(?P<id>[^/]+)/status/open", "mark_sales_order_as_open"),
    )]


class FakeZoho:
    """`FakeZoho(...).start()` serves on `url`; `accounts_url` and `api_url` are what `zoho.accounts_url` and
    `zoho.api_url` take. `stop()` ends it. Usable as a context manager."""

    def __init__(self, *, client_id: str = "fake-client-id", client_secret: str = "fake-client-secret",
                 refresh_token: str = "fake-refresh-token", organization_id: str = ORGANIZATION_ID,
                 organization_name: str = "T2Mobile (fake)", faults: ZohoFaults | None = None,
                 inspector: Inspector | None = None, clock: Clock = utcnow, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.organization_id = organization_id
        self.organization_name = organization_name
        self.faults = faults or ZohoFaults()
        self.inspector = inspector
        self.clock = clock
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: HttpListener | None = None
        self._tokens: deque[tuple[str, datetime]] = deque(maxlen=VALID_TOKENS)
        self._token_requests: list[datetime] = []
        self._issued: list[str] = []
        self._admitted: deque[datetime] = deque()   # API calls let through, still inside the rate window
        self._arrivals: list[datetime] = []         # every API call, as it arrived
        self._day: str | None = None
        self._used_today = 0
        self._answered_429 = 0
        self._requests: dict[str, int] = {}
        self._serial = 0
        self._contacts: dict[str, dict[str, Any]] = {}
        self._items: dict[str, dict[str, Any]] = {
            product.item_id: {"item_id": product.item_id, "name": product.name, "status": "active",
                              "rate": min(product.prices.values()), "unit": "licence", "product_type": "service"}
            for product in DEFAULT_PRODUCTS.values()}
        self._salesorders: dict[str, dict[str, Any]] = {}

    # lifecycle

    def start(self) -> FakeZoho:
        self._stopping = threading.Event()
        self._listener = HttpListener(self._host, self._port, MAX_BODY_BYTES, self._wsgi).start()
        self._port = self._listener.port
        return self

    def stop(self) -> None:
        """Stop serving; answers held by a fault are abandoned."""
        self._stopping.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()

    def __enter__(self) -> FakeZoho:
        return self if self._listener is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._listener is None:
            raise RuntimeError("FakeZoho is not running; call start()")
        return f"http://127.0.0.1:{self._port}"  # also when it listens on every address (--host 0.0.0.0)

    @property
    def accounts_url(self) -> str:
        return self.url

    @property
    def api_url(self) -> str:
        return self.url + API_ROOT

    def environment(self) -> dict[str, str]:
        """The zoho.* settings that point the daemon at this fake, as environment variables."""
        return {env_var_for(f"zoho.{key}"): value for key, value in (
            ("accounts_url", self.accounts_url), ("api_url", self.api_url),
            ("organization_id", self.organization_id), ("client_id", self.client_id),
            ("client_secret", self.client_secret), ("refresh_token", self.refresh_token))}

    # knobs and what a test reads

    def configure(self, **knobs: Any) -> None:
        """Set several `ZohoFaults` fields at once, atomically with respect to requests."""
        unknown = set(knobs) - {f.name for f in fields(ZohoFaults)}
        if unknown:
            raise TypeError(f"unknown ZohoFaults field(s): {', '.join(sorted(unknown))}")
        with self._lock:
            self.faults = replace(self.faults, **knobs)  # checked as a new ZohoFaults would be

    def expire_tokens(self) -> None:
        """Every access token issued so far stops working now, as if its hour were up."""
        with self._lock:
            self._tokens.clear()

    def add_item(self, item_id: str, name: str, rate: float) -> None:
        with self._lock:
            self._items[item_id] = {"item_id": item_id, "name": name, "status": "active", "rate": rate,
                                    "unit": "licence", "product_type": "service"}

    @property
    def salesorders(self) -> list[dict[str, Any]]:
        """Every sales order created, oldest first, as GET /salesorders/{id} shows it."""
        with self._lock:
            return [dict(order) for order in self._salesorders.values()]

    def salesorders_for(self, reference_number: str) -> list[dict[str, Any]]:
        return [order for order in self.salesorders if order["reference_number"] == reference_number]

    @property
    def contacts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(contact) for contact in self._contacts.values()]

    @property
    def issued_tokens(self) -> list[str]:
        """Every access token issued, oldest first."""
        with self._lock:
            return list(self._issued)

    @property
    def token_requests(self) -> int:
        """POST /oauth/v2/token requests received, whatever their answer."""
        return self.requests_received.get(f"POST {TOKEN_PATH}", 0)

    @property
    def requests_received(self) -> dict[str, int]:
        """Requests received per "METHOD operation" (e.g. "POST create_sales_order", "POST /oauth/v2/token")."""
        with self._lock:
            return dict(self._requests)

    @property
    def api_calls(self) -> int:
        with self._lock:
            return len(self._arrivals)

    @property
    def arrivals(self) -> list[datetime]:
        """When each API call arrived (on the fake's clock), the refused ones too, in arrival order."""
        with self._lock:
            return list(self._arrivals)

    @property
    def answered_429(self) -> int:
        with self._lock:
            return self._answered_429

    @property
    def used_today(self) -> int:
        with self._lock:
            return self._used_today

    def busiest_window(self, window_seconds: float | None = None) -> int:
        """The most API calls that arrived within any `window_seconds` (default: the rate window)."""
        span = timedelta(seconds=window_seconds if window_seconds is not None else self.faults.rate_window_seconds)
        arrivals = sorted(self.arrivals)
        most, start = 0, 0
        for end, moment in enumerate(arrivals):
            while moment - arrivals[start] >= span:
                start += 1
            most = max(most, end - start + 1)
        return most

    # HTTP

    def _wsgi(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        length = environ.get("CONTENT_LENGTH")
        body = environ["wsgi.input"].read(int(length)) if length else b""
        headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items()
                   if key.startswith("HTTP_")}
        request = ZohoRequest(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""),
                              tuple(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)),
                              headers, body, environ.get("CONTENT_TYPE", "").split(";")[0].strip())
        answer = self._serve(request)
        data = json.dumps(answer.document).encode()
        if self.inspector is not None:
            self.inspector.check_response(request, answer.status, data)
        if answer.hold_seconds > 0:
            self._stopping.wait(answer.hold_seconds)  # the client gives up meanwhile; what it lost is stored
        start_response(f"{answer.status} {'OK' if answer.status < 400 else 'Error'}", [
            ("Content-Type", "application/json;charset=UTF-8"), ("Content-Length", str(len(data))),
            *answer.headers])
        return [data]

    def _serve(self, request: ZohoRequest) -> _Answer:
        token = request.path == TOKEN_PATH and request.method == "POST"
        route = next(((name, match) for method, pattern, name in _API_ROUTES
                      if method == request.method and (match := pattern.match(request.path))), None)
        self._count(f"POST {TOKEN_PATH}" if token else f"{request.method} {route[0] if route else request.path}")
        if not token and route is None:
            return _Answer(404, {"code": 5, "message": "Invalid URL Passed"})
        if self.inspector is not None:
            problem = self.inspector.check_request(request)
            if problem is not None:  # as the accounts server or the Books API would refuse it
                return _Answer(400, {"error": "invalid_request", "error_description": problem} if token
                               else {"code": 4, "message": f"Invalid value passed: {problem}"})
        if token:
            return self._token(request)
        name, match = route
        with self._lock:
            answer = self._api(request, name, match.groupdict().get("id"))
            answer.headers += self._limit_headers()
        return answer

    def _count(self, key: str) -> None:
        with self._lock:
            self._requests[key] = self._requests.get(key, 0) + 1

    # accounts server

    def _token(self, request: ZohoRequest) -> _Answer:
        """Zoho reads the refresh-token grant from the query string (form fields work too)."""
        params = dict(request.query)
        if request.content_type == "application/x-www-form-urlencoded":
            params.update(parse_qsl(request.body.decode("utf-8", "replace")))
        faults = self.faults
        with self._lock:
            now = self.clock()
            self._token_requests = [t for t in self._token_requests if now - t < TOKEN_REQUESTS_WINDOW]
            self._token_requests.append(now)
            if faults.refresh_refusal == "access_denied" or \
                    len(self._token_requests) > faults.token_requests_per_10_minutes:
                return _Answer(faults.access_denied_status, dict(ACCESS_DENIED))
            if params.get("grant_type") != "refresh_token":
                return _Answer(200, {"error": "unsupported_grant_type"})
            if params.get("client_id") != self.client_id or params.get("client_secret") != self.client_secret:
                return _Answer(200, {"error": "invalid_client"})
            if faults.refresh_refusal == "invalid_code" or params.get("refresh_token") != self.refresh_token:
                return _Answer(200, {"error": "invalid_code"})
            token = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
            self._issued.append(token)
            self._tokens.append((token, now + timedelta(seconds=faults.token_expires_in)))
            return _Answer(200, {"access_token": token, "scope": "ZohoBooks.fullaccess.all",
                                 "api_domain": "https://www.zohoapis.com", "token_type": "Bearer",
                                 "expires_in": faults.token_expires_in})

    # Books API (lock held)

    def _api(self, request: ZohoRequest, name: str, ident: str | None) -> _Answer:
        faults = self.faults
        now = self.clock()
        self._arrivals.append(now)
        if not self._token_valid(request.headers.get("authorization", ""), now):
            return _Answer(401, dict(INVALID_OAUTHTOKEN if faults.refused_token_answer == "invalid_oauthtoken"
                                     else NOT_AUTHORISED))
        if request.param("organization_id") != self.organization_id:
            return _Answer(400, {"code": 6041, "message": "This user is not associated with this organization."})
        refusal = self._take_call(now)
        if refusal is not None:
            self._answered_429 += 1
            return _Answer(429, refusal)
        if faults.rate_limit_429 > 0:
            faults.rate_limit_429 -= 1
            self._answered_429 += 1
            return _Answer(429, dict(PER_MINUTE_LIMIT))
        if faults.error_5xx > 0:
            faults.error_5xx -= 1
            return _Answer(faults.error_5xx_status, dict(INTERNAL_ERROR))
        return getattr(self, f"_{name}")(request, ident, now)

    def _token_valid(self, authorization: str, now: datetime) -> bool:
        if self.faults.refuse_tokens > 0:
            self.faults.refuse_tokens -= 1
            return False
        scheme, _, token = authorization.partition(" ")
        return scheme == "Zoho-oauthtoken" and any(t == token and expires > now for t, expires in self._tokens)

    def _take_call(self, now: datetime) -> dict[str, Any] | None:
        """Count a call against the day and the rate window, or the refusal (nothing counted)."""
        faults = self.faults
        day = (now + timedelta(hours=faults.utc_offset_hours)).date().isoformat()
        if day != self._day:
            self._day, self._used_today = day, 0
        if self._used_today >= faults.requests_per_day:
            return dict(DAILY_LIMIT)
        window = timedelta(seconds=faults.rate_window_seconds)
        while self._admitted and now - self._admitted[0] >= window:
            self._admitted.popleft()
        if len(self._admitted) >= faults.requests_per_minute:
            return dict(PER_MINUTE_LIMIT)
        self._admitted.append(now)
        self._used_today += 1
        return None

    def _limit_headers(self) -> list[tuple[str, str]]:
        now = self.clock()
        offset = timedelta(hours=self.faults.utc_offset_hours)
        tomorrow = datetime.combine((now + offset).date() + timedelta(days=1), datetime.min.time(), now.tzinfo) - offset
        return [("X-Rate-Limit-Limit", str(self.faults.requests_per_day)),
                ("X-Rate-Limit-Remaining", str(max(self.faults.requests_per_day - self._used_today, 0))),
                ("X-Rate-Limit-Reset", str(int((tomorrow - now).total_seconds())))]

    def _next_id(self) -> str:
        self._serial += 1
        return f"{4815000000100000 + self._serial}"

    def _get_organization(self, request: ZohoRequest, ident: str | None, now: datetime) -> _Answer:
        if ident != self.organization_id:
            return _Answer(404, {"code": 1002, "message": "Organization does not exist."})
        return _Answer(200, {"code": 0, "message": "success", "organization": {
            "organization_id": self.organization_id, "name": self.organization_name, "is_default_org": True,
            "currency_code": "NGN", "time_zone": "Africa/Lagos"}})

    def _list_contacts(self, request: ZohoRequest, ident: str | None, now: datetime) -> _Answer:
        email = (request.param("email") or "").strip().lower()
        found = [c for c in self._contacts.values() if not email or c["email"].lower() == email]
        summaries = [{key: contact[key] for key in ("contact_id", "contact_name", "contact_type", "status", "email",
                                                     "phone", "created_time", "last_modified_time")}
                     for contact in found]
        return _Answer(200, {"code": 0, "message": "success", "contacts": summaries,
                             "page_context": _page(len(summaries))})

    def _create_contact(self, request: ZohoRequest, ident: str | None, now: datetime) -> _Answer:
        document = _json(request.body)
        if not isinstance(document, dict) or not str(document.get("contact_name") or "").strip():
            return _Answer(400, {"code": 4, "message": "Invalid value passed for contact_name"})
        if any(c["contact_name"] == document["contact_name"] for c in self._contacts.values()):
            return _Answer(400, {"code": 3062, "message": "The customer name already exists. Please specify a "
                                                          "different name."})
        persons = [p for p in document.get("contact_persons") or [] if isinstance(p, dict)]
        primary = next((p for p in persons if p.get("is_primary_contact")), persons[0] if persons else {})
        contact_id = self._next_id()
        stamp = _zoho_time(now)
        contact = {"contact_id": contact_id, "contact_name": document["contact_name"],
                   "contact_type": document.get("contact_type", "customer"), "status": "active",
                   "email": str(primary.get("email") or ""), "phone": str(primary.get("phone") or ""),
                   "contact_persons": [{**p, "contact_person_id": self._next_id()} for p in persons],
                   "created_time": stamp, "last_modified_time": stamp}
        self._contacts[contact_id] = contact
        return _Answer(201, {"code": 0, "message": "The contact has been added.", "contact": dict(contact)})

    def _list_items(self, request: ZohoRequest, ident: str | None, now: datetime) -> _Answer:
        items = list(self._items.values())
        return _Answer(200, {"code": 0, "message": "success", "items": items, "page_context": _page(len(items))})

    def _get_item(self, request: ZohoRequest, ident: str | None, now: datetime) -> _Answer:
        item = self._items.get(ident or "")
        if item is None:
            return _Answer(404, {"code": 1002, "message": "Item does not exist."})
        return _Answer(200, {"code": 0, "message": "success", "item": dict(item)})

    def _list_sales_orders(self, request: ZohoRequest, ident: str | None, now: datetime) -> _Answer:
        reference = request.param("reference_number")
        found = [o for o in self._salesorders.values() if reference is None or o["reference_number"] == reference]
        summaries = [{key: order[key] for key in ("salesorder_id", "salesorder_number", "reference_number", "status",
                                                   "customer_id", "customer_name", "date", "total", "currency_code",
                                                   "created_time", "last_modified_time")}
                     for order in found]
        return _Answer(200, {"code": 0, "message": "success", "salesorders": summaries,
                             "page_context": _page(len(summaries))})

    def _create_sales_order(self, request: ZohoRequest, ident: str | None, now: datetime) -> _Answer:
        document = _json(request.body)
        if not isinstance(document, dict):
            return _Answer(400, {"code": 4, "message": "Invalid value passed for JSONString"})
        customer = self._contacts.get(str(document.get("customer_id")))
        if customer is None:
            return _Answer(400, {"code": 4, "message": "Invalid value passed for customer_id"})
        lines = document.get("line_items") or []
        if not lines or any(str(line.get("item_id")) not in self._items for line in lines):
            return _Answer(400, {"code": 4, "message": "Invalid value passed for item_id"})
        line_items = []
        for line in lines:
            item = self._items[str(line["item_id"])]
            rate, quantity = float(line.get("rate", item["rate"])), float(line.get("quantity", 1))
            line_items.append({"line_item_id": self._next_id(), "item_id": item["item_id"], "name": item["name"],
                               "rate": rate, "quantity": quantity, "item_total": round(rate * quantity, 2)})
        order_id = self._next_id()
        stamp = _zoho_time(now)
        order = {"salesorder_id": order_id, "salesorder_number": f"SO-{len(self._salesorders) + 1:05d}",
                 "reference_number": str(document.get("reference_number") or ""), "status": "draft",
                 "date": now.date().isoformat(), "customer_id": customer["contact_id"],
                 "customer_name": customer["contact_name"], "currency_code": "NGN", "line_items": line_items,
                 "total": round(sum(line["item_total"] for line in line_items), 2),
                 "created_time": stamp, "last_modified_time": stamp}
        self._salesorders[order_id] = order
        hold = 0.0
        if self.faults.timeout_after_create > 0:
            self.faults.timeout_after_create -= 1
            hold = self.faults.timeout_hold_seconds
        return _Answer(201, {"code": 0, "message": "Sales Order has been created.", "salesorder": dict(order)},
                       hold_seconds=hold)

    def _get_sales_order(self, request: ZohoRequest, ident: str | None, now: datetime) -> _Answer:
        order = self._salesorders.get(ident or "")
        if order is None:
            return _Answer(404, {"code": 1002, "message": "Sales Order does not exist."})
        return _Answer(200, {"code": 0, "message": "success", "salesorder": dict(order)})

    def _mark_sales_order_as_open(self, request: ZohoRequest, ident: str | None, now: datetime) -> _Answer:
        order = self._salesorders.get(ident or "")
        if order is None:
            return _Answer(404, {"code": 1002, "message": "Sales Order does not exist."})
        order["status"], order["last_modified_time"] = "open", _zoho_time(now)
        return _Answer(201, {"code": 0, "message": "Sales order status has been changed to Open."})


def _page(count: int) -> dict[str, Any]:
    return {"page": 1, "per_page": max(count, 200), "has_more_page": False}


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _zoho_time(moment: datetime) -> str:
    """Zoho writes times as 2014-07-28T08:29:07+0530."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S%z")


def serve_fake_zoho(host: str, port: int, faults: ZohoFaults | None = None) -> FakeZoho:
    """A started fake on host:port, for `reconciler fake zoho`."""
    return FakeZoho(faults=faults, host=host, port=port).start()

