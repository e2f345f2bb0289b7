"""The T2Mobile partner intake API on the public listener: the catalogue, new orders (Idempotency-Key), an
order's status, readiness, and this API's OpenAPI document (openapi.json beside this file, which the tests
hold the server to; its FulfilmentRequest schema is also what the fields are checked against here, so the
document and the server cannot disagree).

An order is queued into `zoho_orders` as a shop's INSERT would queue it; the Zoho jobs take it from there.
"""
from __future__ import annotations

import copy
import hashlib
import hmac
import json
import logging
import math
import re
from functools import cache
from importlib import resources
from typing import Any, Mapping
from urllib.parse import quote

from sqlalchemy import Engine, RowMapping
from sqlalchemy.exc import IntegrityError

from reconciler.config import TENURES, Config
from reconciler.coordination.pauses import Pauses
from reconciler.coordination.rate_limits import RateLimit
from reconciler.engine.clock import Clock
from reconciler.engine.logs import mask_email, mask_phone
from reconciler.http.listener import Request, Response, Route
from reconciler.providers.base import RouteKey
from reconciler.providers.zoho.idempotency import Answer, Claimed, IdempotencyKeys, InProgress, Mismatch, Replay
from reconciler.providers.zoho.partner_orders import find_order, insert_order

log = logging.getLogger(__name__)

PREFIX = "/t2mobile"
PAUSE_KEY = "zoho"  # the Zoho flow's pause (coordination/pauses.py)
REALM = "t2mobile"
RATE_WINDOW_SECONDS = 60.0
# Body fields -> zoho_orders columns (the shop's columns of the data contract).
COLUMNS = {"orderId": "order_id", "productId": "product_id", "customerId": "customer_id",
           "customerName": "customer_name", "customerEmail": "customer_email", "customerPhone": "customer_phone",
           "tenure": "tenure"}


@cache
def openapi_document() -> dict[str, Any]:
    """The document as shipped in the package."""
    return json.loads(resources.files(__package__).joinpath("openapi.json").read_text())


def served_document(config: Config) -> dict[str, Any]:
    """The shipped document with this server's product ids as the enum of productId, so a client (or a test
    tool) knows which ones are sold here."""
    document = copy.deepcopy(openapi_document())
    request = document["components"]["schemas"]["FulfilmentRequest"]
    request["properties"]["productId"]["enum"] = sorted(config.partner.products)
    return document


def partner_routes(config: Config, engine: Engine, clock: Clock) -> dict[RouteKey, Route]:
    """The intake's routes, for ZohoProvider.routes."""
    intake = _Intake(config, engine, clock)
    openapi = Response(200, json.dumps(served_document(config)).encode())
    return {
        ("GET", f"{PREFIX}/products"): intake.products,
        ("POST", f"{PREFIX}/fulfilment"): intake.fulfilment,
        ("GET", f"{PREFIX}/orders/{{orderId}}"): intake.order,
        ("GET", f"{PREFIX}/health"): intake.health,
        ("GET", f"{PREFIX}/openapi.json"): lambda _: openapi,
    }


def client_id(api_key: str) -> str:
    """Names an API key in the database (idempotency scope, rate-limit key) without storing the key."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


def status_url(order_id: str) -> str:
    return f"{PREFIX}/orders/{quote(order_id, safe='')}"


class _Intake:
    def __init__(self, config: Config, engine: Engine, clock: Clock) -> None:
        self.config = config
        self.engine = engine
        self.clock = clock
        self.partner = config.partner
        self.keys = IdempotencyKeys(engine, config.partner.idempotency_ttl_hours, clock)
        # Compared as digests: equal lengths, so the comparison's time says nothing about the key.
        self._api_keys = {hashlib.sha256(key.encode()).digest(): client_id(key)
                          for key in config.partner.api_keys.split()}
        self._limits: dict[str, RateLimit] = {}
        self._fields = _FieldRules(openapi_document()["components"]["schemas"]["FulfilmentRequest"])
        self._products = Response.json(200, {"products": [
            {"id": product_id, "name": product.name,
             "tenures": [{"tenure": tenure, "months": TENURES[tenure], "price": price, "currency": product.currency}
                         for tenure, price in sorted(product.prices.items(), key=lambda item: TENURES[item[0]])]}
            for product_id, product in sorted(config.partner.products.items())]})

    # -- routes

    def products(self, request: Request) -> Response:
        return self._refused(request) or self._products

    def order(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused:
            return refused
        order_id = request.params["orderId"]
        row = find_order(self.engine, order_id) if _ORDER_ID.search(order_id) else None
        if row is None:
            return Response.error(404, "not_found", "no order has this orderId")
        return Response.json(200, _shown(row))

    def fulfilment(self, request: Request) -> Response:
        client = self._client(request)
        refused = self._refused(request, client)
        if refused:
            return refused
        key = _idempotency_key(request.headers.get("idempotency-key"))
        if key is None:
            message = ("Idempotency-Key header required" if "idempotency-key" not in request.headers else
                       "Idempotency-Key must be a quoted string (or a bare token) of 1-255 printable ASCII characters")
            return Response.error(400, "idempotency_key_invalid", message)
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return Response.error(415, "unsupported_media_type", "send the body as application/json")
        document = _json(request.body)
        if document is None:
            return Response.error(400, "invalid_json", "the body is not JSON text in UTF-8")
        claim = self.keys.claim(client, key, request_fingerprint(request.path, document))
        if isinstance(claim, Replay):
            return _replayed(claim.answer)
        if isinstance(claim, InProgress):
            return Response.error(409, "idempotency_key_in_use",
                                  "a request with this Idempotency-Key is still being handled; retry shortly")
        if isinstance(claim, Mismatch):
            return _key_reused()
        try:
            return self._take(client, key, claim, document)
        except BaseException:
            self._release_quietly(client, key, claim)
            raise

    def health(self, _: Request) -> Response:
        if not (self.config.zoho.organization_id and self.partner.webhook_url):
            return Response.error(503, "not_ready", "the Zoho flow is not configured here",
                                  headers=(("Retry-After", "300"),))
        now = self.clock()
        pause = Pauses(self.engine).get(PAUSE_KEY)  # the database unreachable: the listener's 503 says so
        if pause.paused:
            wait = max(1, math.ceil((pause.paused_until - now).total_seconds()))
            return Response.error(
                503, "not_ready", f"the Zoho flow is paused ({pause.reason}) until {_timestamp(pause.paused_until)}; "
                "orders are taken and wait", headers=(("Retry-After", str(wait)),))
        return Response.json(200, {"status": "ok"})

    # -- steps

    def _take(self, client: str, key: str, claim: Claimed, document: Any) -> Response:
        errors = self._fields.errors(document)
        if isinstance(document, dict):
            errors = {**self._catalogue_errors(document, errors), **errors}
        if errors:
            self.keys.release(client, key, claim)
            return Response.error(400, "invalid_fields", "some fields are missing or wrong: " + ", ".join(errors),
                                  fields=errors)
        order = {column: document[field] for field, column in COLUMNS.items()}
        order["idempotency_key"] = f"{client}:{key}"  # unique per API key, as the key's scope is
        try:
            with self.engine.begin() as conn:
                row = insert_order(conn, order)
                accepted = row is not None
                if not accepted:
                    row = find_order(conn, order["order_id"])
                shown = _shown(row)
                answer = Answer(202 if accepted else 200, (("Location", shown["statusUrl"]),),
                                json.dumps(shown).encode())
                if not self.keys.store(conn, client, key, claim, row["order_id"], answer):
                    raise _ClaimLost
        except _ClaimLost:
            return Response.error(409, "idempotency_key_in_use",
                                  "a request with this Idempotency-Key took over while this one was handled")
        except IntegrityError:  # zoho_orders.idempotency_key: an order whose answer has expired, or a shop's
            self.keys.release(client, key, claim)
            return _key_reused()
        if accepted:
            log.info("partner order %s accepted: product %s, tenure %s, customer %s, %s", row["order_id"],
                     row["product_id"], row["tenure"], mask_email(order["customer_email"]),
                     mask_phone(order["customer_phone"]), extra={"order_ref": row["order_id"],
                                                                 "order_table": "zoho_orders"})
        return Response(answer.status, answer.body, headers=answer.headers)

    def _catalogue_errors(self, document: Mapping[str, Any], errors: Mapping[str, str]) -> dict[str, str]:
        """Whether the catalogue sells this product for this tenure (fields already refused are not asked)."""
        if "productId" in errors:
            return {}
        product = self.partner.products.get(document["productId"])
        if product is None:
            return {"productId": "unknown product; GET /t2mobile/products lists them"}
        if "tenure" not in errors and document["tenure"] not in product.prices:
            return {"tenure": f"not sold for {document['productId']}; it has "
                              + ", ".join(sorted(product.prices, key=TENURES.__getitem__))}
        return {}

    def _client(self, request: Request) -> str | None:
        """The caller's client id when it sent one of the configured API keys (every key is compared)."""
        scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        digest = hashlib.sha256(token.strip().encode("latin-1")).digest()  # WSGI: the bytes as sent
        found = None
        for known, client in self._api_keys.items():
            if hmac.compare_digest(digest, known):
                found = client
        return found

    def _refused(self, request: Request, client: str | None = None) -> Response | None:
        """401 without a known API key, 429 over the key's rate; None when the call may go on."""
        client = client or self._client(request)
        if client is None:
            challenge = f'Bearer realm="{REALM}"'
            if "authorization" in request.headers:
                challenge += ', error="invalid_token"'
            return Response.error(401, "unauthorized", "send Authorization: Bearer <API key> with a key of yours",
                                  headers=(("WWW-Authenticate", challenge),))
        if client not in self._limits:
            self._limits[client] = RateLimit(self.engine, f"partner:{client}", self.partner.requests_per_minute,
                                             RATE_WINDOW_SECONDS, self.clock)
        wait = self._limits[client].try_acquire()
        if wait > 0:
            return Response.error(429, "rate_limited", f"over {self.partner.requests_per_minute} calls a minute "
                                  "for this API key", headers=(("Retry-After", str(max(1, math.ceil(wait)))),))
        return None

    def _release_quietly(self, client: str, key: str, claim: Claimed) -> None:
        """After a failure (often the database's): free the key now if possible, else its claim runs out."""
        try:
            self.keys.release(client, key, claim)
        except Exception:
            log.debug("could not free an Idempotency-Key after a failed request", exc_info=True)


class _ClaimLost(Exception):
    """This request outlived its claim on the key and another request took it: undo this one's order."""


class _FieldRules:
    """FulfilmentRequest's rules read from the OpenAPI document: required, string, length, pattern, enum.
    JSON Schema patterns are ECMA-262, where `$` is the very end; Python's `$` also matches before a final
    newline, so it is read as `\\Z`."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.required = list(schema["required"])
        self.properties = {name: {**rule, "pattern": re.compile(_python_pattern(rule["pattern"]))
                                  if "pattern" in rule else None}
                           for name, rule in schema["properties"].items()}

    def errors(self, document: Any) -> dict[str, str]:
        if not isinstance(document, dict):
            return {"body": "must be a JSON object"}
        errors = {}
        for name in self.required:
            rule = self.properties[name]
            if name not in document:
                errors[name] = "required"
                continue
            value = document[name]
            if not isinstance(value, str):
                errors[name] = "must be a string"
            elif len(value) < rule.get("minLength", 0):
                errors[name] = "must not be empty"
            elif len(value) > rule.get("maxLength", math.inf):
                errors[name] = f"must be at most {rule['maxLength']} characters"
            elif "enum" in rule and value not in rule["enum"]:
                errors[name] = "must be one of " + ", ".join(rule["enum"])
            elif rule["pattern"] is not None and not rule["pattern"].search(value):
                errors[name] = _PATTERN_WORDS.get(name, _TEXT_WORDS)
        return errors


_PATTERN_WORDS = {
    "orderId": "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
    "customerEmail": "must be an e-mail address",
    "customerPhone": "must be a phone number: 7-15 digits, optionally a leading + and single spaces or dashes",
}
_TEXT_WORDS = "must hold some text and no control characters"


def _python_pattern(pattern: str) -> str:
    return pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith(r"\$") else pattern


_ORDER_ID = re.compile(_python_pattern(
    openapi_document()["components"]["schemas"]["FulfilmentRequest"]["properties"]["orderId"]["pattern"]))
_IDEMPOTENCY_KEY = re.compile(_python_pattern(
    openapi_document()["components"]["parameters"]["IdempotencyKey"]["schema"]["pattern"]))
_ESCAPED = re.compile(r'\\(["\\])')


def _idempotency_key(header: str | None) -> str | None:
    """The key of an Idempotency-Key header: a Structured Field string (RFC 8941 §3.3.3) as the draft says, or,
    as many clients send it, a bare token; None when it is missing or malformed."""
    if header is None or not _IDEMPOTENCY_KEY.search(header):
        return None
    return _ESCAPED.sub(r"\1", header[1:-1]) if header.startswith('"') else header


def _json(body: bytes) -> Any:
    """The body as JSON, or None when it is not JSON text in UTF-8 (a lone surrogate escape is not text either)."""
    try:
        document = json.loads(body.decode("utf-8"))
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except (UnicodeError, ValueError, RecursionError):
        return None
    return document


def request_fingerprint(path: str, document: Any) -> str:
    """The request as the draft's fingerprint: its path and its JSON body, canonical (key order and spacing do
    not make a different request)."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{path}\n{canonical}".encode()).hexdigest()


def _replayed(answer: Answer) -> Response:
    return Response(answer.status, answer.body, headers=answer.headers + (("Idempotent-Replayed", "true"),))


def _key_reused() -> Response:
    return Response.error(422, "idempotency_key_reused",
                          "this Idempotency-Key was used for a different request; use a new key for a new request")


def _shown(row: RowMapping) -> dict[str, Any]:
    """An order as the partner sees it."""
    return {
        "orderId": row["order_id"], "productId": row["product_id"], "tenure": row["tenure"],
        "customerId": row["customer_id"], "status": row["status"], "salesOrderId": row["zoho_salesorder_id"],
        "activationReference": row["activation_reference"],
        "expiryDate": _timestamp(row["expiry_date"]) if row["expiry_date"] else None,
        "lastError": row["reject_reason"] or row["last_error"],
        "createdAt": _timestamp(row["created_at"]), "updatedAt": _timestamp(row["updated_at"]),
        "statusUrl": status_url(row["order_id"]),
    }


def _timestamp(moment: Any) -> str:
    return moment.isoformat().replace("+00:00", "Z")
