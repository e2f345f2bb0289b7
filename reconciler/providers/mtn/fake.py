"""A fake MTN data-bundle reseller: a real HTTP server on 127.0.0.1 for the demo and the tests.

It speaks the reseller's API as the real one does (`POST /api/orders`, `GET /api/orders`,
`GET /api/balance`, signed `order.status_changed` webhooks) and misbehaves the way such
providers do in production: PHP warnings before the JSON, three history envelopes, varying
status words, 429 and 500, an order created behind a timeout, webhooks dropped, duplicated,
late or out of order, and completed orders reversed later. Every fault is a field of
`MtnFaults`, settable while the server runs; all randomness comes from one injectable
`random.Random`, so a seeded fake behaves the same way every run.

Orders stay `processing` until `process_pending()` (tests, frozen clock) or the background
ticker (`auto_process_seconds`, the demo) settles them; a failed or reversed order is refunded.
"""
from __future__ import annotations

import json
import random
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Literal
from urllib.parse import urlsplit

import requests

from reconciler.engine.clock import Clock, utcnow
from reconciler.webhooks.signing import sha256_signature

PROCESSING_WORDS = ("processing", "queued", "in_progress", "submitted")
COMPLETED_WORDS = ("success", "delivered", "fulfilled", "sent", "completed")
FAILED_WORDS = ("failed", "error", "cancelled", "rejected", "expired", "refunded")
PHP_WARNING = ("<br />\n<b>Warning</b>:  Undefined index: reference in "
               "<b>/var/www/html/api/orders.php</b> on line <b>12</b><br />\n")
DEFAULT_PLANS = frozenset({1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 25, 30, 40, 50, 100})
HISTORY_SHAPES = ("bare", "data", "orders")
WEBHOOK_EVENT = "order.status_changed"
SIGNATURE_HEADER = "X-Webhook-Signature"
State = Literal["processing", "completed", "failed"]

_PHONE = re.compile(r"0\d{9}")
_TICK_SECONDS = 0.05
_POLL_SECONDS = 0.02


@dataclass
class MtnFaults:
    """What the fake does wrong. A rate is a probability per request or per webhook: 0 never, 1 always."""

    # POST /api/orders
    rate_limit_429_rate: float = 0.0          # 429, no order created
    retry_after: str | None = None            # the Retry-After header sent with a 429, as written (e.g. "1e9")
    error_5xx_rate: float = 0.0               # 500, no order created
    error_5xx_after_create_rate: float = 0.0  # order created (and charged), then 500
    timeout_after_create: int = 0             # the next N orders are created, then not answered in time
    timeout_after_create_rate: float = 0.0    # ... or this fraction of orders
    timeout_sleep_seconds: float = 30.0       # how long such an answer is held; make it exceed the client's timeout
    timeout_hangup: bool = False              # after the hold, close the connection instead of answering late
    success_status: int = 200                 # 200 or 201 for a created order
    # GET /api/orders and GET /api/balance
    read_error_5xx_rate: float = 0.0
    history_shape: str = "data"               # "bare" list, {"success":true,"data":[...]} or {"orders":[...]}
    history_limit: int | None = None          # the history lists only the latest N orders (None: every order)
    balance_as_string: bool = False           # "995.00" instead of 995.0
    # every response
    noise_prefix: str = ""                    # written before the JSON, e.g. PHP_WARNING or "<html>..."
    # outcomes, and the words that report them (one picked at random per transition)
    failure_rate: float = 0.0
    processing_words: tuple[str, ...] = ("processing",)
    completed_words: tuple[str, ...] = ("success",)
    failed_words: tuple[str, ...] = ("failed",)
    # webhooks
    webhook_drop_rate: float = 0.0            # never sent; only the history tells
    webhook_duplicate_rate: float = 0.0       # the same body sent twice
    webhook_delay_seconds: float = 0.0        # every webhook sent this late, from a timer thread
    webhook_stale_rate: float = 0.0           # after the final webhook, the old "processing" one arrives again


@dataclass(frozen=True)
class SentWebhook:
    """One webhook POST the fake made (or tried to make)."""

    order_id: int
    status: str
    body: bytes
    signature: str                # the X-Webhook-Signature header value, "sha256=<hex>"
    status_code: int | None       # None when the receiver could not be reached
    error: str | None             # exception class name, or "no webhook_url"


@dataclass
class _Order:
    id: int
    recipient_phone: str
    network: str
    size_gb: int
    amount: float
    status: str
    message: str
    created_at: str
    updated_at: str
    state: State = "processing"
    processing_status: str = "processing"  # the word it carried while processing, for stale webhooks
    created_monotonic: float = 0.0

    def public(self, **override: Any) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "message": self.message, "amount": self.amount,
                "recipient_phone": self.recipient_phone, "plan_name": f"MTN {self.size_gb}GB",
                "network": self.network, "size_mb": self.size_gb * 1024,
                "created_at": self.created_at, "updated_at": self.updated_at, **override}


@dataclass
class _Reply:
    status: int
    payload: Any
    hold_seconds: float = 0.0
    hangup: bool = False
    retry_after: str | None = None


_Webhook = tuple[int, str, bytes]  # order id, status word, body


class FakeMtn:
    """The reseller. `FakeMtn(...).start()` serves on `url`; `stop()` ends it (and `start()` again resumes
    on the same port with the same orders). Usable as a context manager."""

    def __init__(self, *, api_key: str = "test-mtn-key", webhook_url: str | None = None,
                 webhook_secret: str = "test-mtn-webhook-secret", balance: float = 1000.0,
                 plans: Iterable[int] = DEFAULT_PLANS, price_per_gb: float = 5.0,
                 networks: Iterable[str] = ("MTN",), faults: MtnFaults | None = None,
                 rng: random.Random | None = None, clock: Clock = utcnow,
                 auto_process_seconds: float | None = None, webhook_timeout_seconds: float = 2.0,
                 first_order_id: int = 1001, host: str = "127.0.0.1", port: int = 0) -> None:
        self.api_key = api_key
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.plans = frozenset(plans)
        self.price_per_gb = price_per_gb
        self.networks = frozenset(n.upper() for n in networks)
        self.faults = faults or MtnFaults()
        self.rng = rng or random.Random(0)
        self.clock = clock
        self.auto_process_seconds = auto_process_seconds
        self.webhook_timeout_seconds = webhook_timeout_seconds
        self._host = host
        self._port = port
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._balance = float(balance)
        self._orders: dict[int, _Order] = {}
        self._next_id = first_order_id
        self._requests: dict[str, int] = {}
        self.arrivals: list[float] = []  # time.monotonic() of every request, as it arrived
        self._created_count = 0
        self._webhooks: list[SentWebhook] = []
        self._webhooks_dropped = 0
        self._server: _Server | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._timers: list[threading.Timer] = []

    # lifecycle

    def start(self) -> FakeMtn:
        self._stopping = threading.Event()
        self._server = _Server(self, (self._host, self._port))
        self._port = self._server.server_address[1]
        # a short poll so stop() returns at once (shutdown waits for the serve loop's next poll)
        self._threads = [threading.Thread(target=self._server.serve_forever, args=(_POLL_SECONDS,),
                                          name="fake-mtn", daemon=True),
                         threading.Thread(target=self._tick, name="fake-mtn-ticker", daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: held answers are abandoned, open keep-alive connections are cut, late webhooks dropped."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.cut_connections()
        with self._lock:
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []

    def __enter__(self) -> FakeMtn:
        return self if self._server is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeMtn is not running; call start()")
        return f"http://127.0.0.1:{self._port}"

    # knobs and introspection

    def configure(self, **knobs: Any) -> None:
        """Set several `MtnFaults` fields at once, atomically with respect to requests."""
        known = {f.name for f in fields(MtnFaults)}
        unknown = set(knobs) - known
        if unknown:
            raise TypeError(f"unknown MtnFaults field(s): {', '.join(sorted(unknown))}")
        if knobs.get("history_shape", "data") not in HISTORY_SHAPES:
            raise ValueError(f"history_shape must be one of {HISTORY_SHAPES}")
        with self._lock:
            for name, value in knobs.items():
                setattr(self.faults, name, value)

    @property
    def bundles(self) -> dict[int, float]:
        """What it sells, size in GB -> price: the shape of the `mtn.bundles` setting."""
        return {size: round(size * self.price_per_gb, 2) for size in sorted(self.plans)}

    @property
    def balance(self) -> float:
        with self._lock:
            return self._balance

    @balance.setter
    def balance(self, value: float) -> None:
        with self._lock:
            self._balance = float(value)

    @property
    def orders(self) -> list[dict[str, Any]]:
        """Every order as the history reports it, oldest first."""
        with self._lock:
            return [order.public() for order in self._orders.values()]

    def order_state(self, order_id: int) -> State:
        """"processing", "completed" or "failed", whatever word the order's status uses."""
        with self._lock:
            return self._orders[order_id].state

    @property
    def created_count(self) -> int:
        with self._lock:
            return self._created_count

    @property
    def create_requests(self) -> int:
        """POST /api/orders requests received, whatever their answer."""
        return self.requests_received.get("POST /api/orders", 0)

    @property
    def requests_received(self) -> dict[str, int]:
        """Requests received per "METHOD /path", e.g. {"POST /api/orders": 3, "GET /api/orders": 1}."""
        with self._lock:
            return dict(self._requests)

    @property
    def webhooks(self) -> list[SentWebhook]:
        """Webhooks POSTed (or attempted), in the order they were sent."""
        with self._lock:
            return list(self._webhooks)

    @property
    def webhooks_dropped(self) -> int:
        with self._lock:
            return self._webhooks_dropped

    def wait_for_webhooks(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least `count` webhooks were sent (or attempted); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._webhooks) >= count, timeout)

    def wait_for_orders(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least `count` orders exist; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._orders) >= count, timeout)

    # order processing

    def process_pending(self) -> list[int]:
        """Settle every processing order now (completed, or failed at `failure_rate`) and send its webhooks.

        Returns the settled order ids. Webhooks go out before this returns unless `webhook_delay_seconds`."""
        return self._process(lambda order: True)

    def settle(self, order_id: int, completed: bool, message: str | None = None) -> None:
        """Settle one processing order the way a test wants, and send its webhook."""
        with self._lock:
            order = self._orders[order_id]
            if order.state != "processing":
                raise ValueError(f"order {order_id} is {order.state}, not processing")
            plan = self._finish(order, completed, message)
        self._deliver(plan)

    def reverse(self, order_id: int, message: str = "Reversed by the network: bundle not delivered",
                status: str | None = None) -> None:
        """Flip a completed order to failed (refunded), as the network does hours later, and send a webhook."""
        with self._lock:
            order = self._orders[order_id]
            if order.state != "completed":
                raise ValueError(f"order {order_id} is {order.state}, only a completed order can be reversed")
            plan = self._finish(order, False, message, status)
        self._deliver(plan)

    def _process(self, due: Callable[[_Order], bool]) -> list[int]:
        with self._lock:
            batch = [o for o in self._orders.values() if o.state == "processing" and due(o)]
            plans = [self._finish(o, not self._chance(self.faults.failure_rate)) for o in batch]
        for plan in plans:
            self._deliver(plan)
        return [order.id for order in batch]

    def _tick(self) -> None:
        while not self._stopping.wait(_TICK_SECONDS):
            delay = self.auto_process_seconds
            if delay is not None:
                now = time.monotonic()
                self._process(lambda order: now - order.created_monotonic >= delay)

    def _finish(self, order: _Order, completed: bool, message: str | None = None,
                status: str | None = None) -> list[_Webhook]:
        """Move an order to its final state (lock held); returns the webhooks to send."""
        faults = self.faults
        if completed:
            order.state, order.message = "completed", message or "Data bundle delivered"
            order.status = status or self._word(faults.completed_words)
        else:
            order.state, order.message = "failed", message or "Delivery failed: recipient not eligible"
            order.status = status or self._word(faults.failed_words)
            self._balance = round(self._balance + order.amount, 2)
        order.updated_at = self._now()
        if self._chance(faults.webhook_drop_rate):
            self._webhooks_dropped += 1
            plan = []
        else:
            body = self._webhook_body(order.public())
            plan = [(order.id, order.status, body)] * (2 if self._chance(faults.webhook_duplicate_rate) else 1)
        if self._chance(faults.webhook_stale_rate):
            stale = order.public(status=order.processing_status, message="Order is being processed",
                                 updated_at=order.created_at)
            plan.append((order.id, order.processing_status, self._webhook_body(stale)))
        return plan

    # webhooks

    def _webhook_body(self, order: dict[str, Any]) -> bytes:
        return json.dumps({"event": WEBHOOK_EVENT, "timestamp": self._now(), "order": order}).encode()

    def _deliver(self, plan: list[_Webhook]) -> None:
        if not plan:
            return
        delay = self.faults.webhook_delay_seconds
        if delay <= 0:
            self._send_all(plan)
            return
        timer = threading.Timer(delay, self._send_all, args=(plan,))
        timer.daemon = True
        with self._lock:
            self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()

    def _send_all(self, plan: list[_Webhook]) -> None:
        for order_id, status, body in plan:
            self._send(order_id, status, body)

    def _send(self, order_id: int, status: str, body: bytes) -> None:
        signature = sha256_signature(self.webhook_secret, body)
        url = self.webhook_url
        code: int | None = None
        error: str | None = None
        if url is None:
            error = "no webhook_url"
        else:
            try:
                response = requests.post(url, data=body, timeout=self.webhook_timeout_seconds, headers={
                    "Content-Type": "application/json", SIGNATURE_HEADER: signature})
                code = response.status_code
            except requests.RequestException as exc:  # the receiver being down must not hurt the fake
                error = type(exc).__name__
        with self._changed:
            self._webhooks.append(SentWebhook(order_id, status, body, signature, code, error))
            self._changed.notify_all()

    # the API

    def _answer(self, method: str, path: str, api_key: str | None, body: bytes) -> _Reply:
        with self._lock:
            key = f"{method} {path}"
            self._requests[key] = self._requests.get(key, 0) + 1
            self.arrivals.append(time.monotonic())
        if api_key != self.api_key:
            return _failure(401, "Invalid API key")
        if key == "POST /api/orders":
            return self._create(body)
        if key in ("GET /api/orders", "GET /api/balance"):
            with self._lock:
                if self._chance(self.faults.read_error_5xx_rate):
                    return _failure(500, "Internal server error")
                return self._history() if key == "GET /api/orders" else self._balance_reply()
        return _failure(404, "Not found")

    def _create(self, body: bytes) -> _Reply:
        with self._lock:
            faults = self.faults
            if self._chance(faults.rate_limit_429_rate):
                return _Reply(429, {"success": False, "message": "Too many requests, slow down"},
                              retry_after=faults.retry_after)
            if self._chance(faults.error_5xx_rate):
                return _failure(500, "Internal server error")
            try:
                request = json.loads(body)
            except ValueError:
                return _failure(400, "Invalid JSON body")
            problem = self._invalid(request)
            if problem:
                return _failure(400, problem)
            size_gb = request["size_gb"]
            if size_gb not in self.plans:
                return _failure(404, f"Plan not found: {size_gb}GB")
            amount = round(size_gb * self.price_per_gb, 2)
            if amount > self._balance:
                return _failure(402, "Insufficient balance")
            self._balance = round(self._balance - amount, 2)
            now = self._now()
            word = self._word(faults.processing_words)
            order = _Order(self._next_id, request["recipient_phone"], request["network"], size_gb, amount,
                           word, "Order is being processed", now, now, processing_status=word,
                           created_monotonic=time.monotonic())
            self._orders[order.id] = order
            self._next_id += 1
            self._created_count += 1
            self._changed.notify_all()
            reply = _Reply(faults.success_status, {"success": True, "order_id": order.id, "message": "Order placed"})
            if faults.timeout_after_create > 0 or self._chance(faults.timeout_after_create_rate):
                faults.timeout_after_create = max(0, faults.timeout_after_create - 1)
                reply.hold_seconds, reply.hangup = faults.timeout_sleep_seconds, faults.timeout_hangup
            elif self._chance(faults.error_5xx_after_create_rate):
                reply = _failure(500, "Internal server error")
            return reply

    def _invalid(self, request: Any) -> str | None:
        if not isinstance(request, dict):
            return "Request body must be a JSON object"
        phone, network, size = request.get("recipient_phone"), request.get("network"), request.get("size_gb")
        if not isinstance(phone, str) or not _PHONE.fullmatch(phone):
            return "Invalid recipient_phone: expected 10 digits starting with 0"
        if not isinstance(network, str) or network.upper() not in self.networks:
            return "Invalid network"
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            return "Invalid size_gb: expected a positive integer"
        return None

    def _history(self) -> _Reply:
        entries = [order.public() for order in reversed(self._orders.values())][:self.faults.history_limit]
        shape = self.faults.history_shape
        if shape == "bare":
            return _Reply(200, entries)
        if shape == "orders":
            return _Reply(200, {"orders": entries})
        return _Reply(200, {"success": True, "data": entries})

    def _balance_reply(self) -> _Reply:
        balance: float | str = f"{self._balance:.2f}" if self.faults.balance_as_string else self._balance
        return _Reply(200, {"success": True, "balance": balance, "currency": "GHS"})

    # helpers (lock held)

    def _chance(self, rate: float) -> bool:
        # no draw for a knob that is off, so turning one knob on does not shift another's outcomes
        if rate <= 0:
            return False
        return rate >= 1 or self.rng.random() < rate

    def _word(self, words: tuple[str, ...]) -> str:
        return words[0] if len(words) == 1 else self.rng.choice(words)

    def _now(self) -> str:
        return self.clock().isoformat(timespec="seconds")


def _failure(status: int, message: str) -> _Reply:
    return _Reply(status, {"success": False, "message": message})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeMtn, address: tuple[str, int]) -> None:
        self.fake = fake
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def cut_connections(self) -> None:
        # idle keep-alive connections would otherwise keep being served after stop()
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that gave up on a held answer, or a connection cut by stop(), is expected here
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(self.connection)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fake = self.server.fake
        reply = fake._answer(self.command, urlsplit(self.path).path, self.headers.get("X-API-KEY"), body)
        if reply.hold_seconds > 0 or reply.hangup:
            stopping = fake._stopping
            stopping.wait(reply.hold_seconds)
            if reply.hangup or stopping.is_set():
                self.close_connection = True
                return
        data = (fake.faults.noise_prefix + json.dumps(reply.payload)).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if reply.retry_after is not None:
            self.send_header("Retry-After", reply.retry_after)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass
