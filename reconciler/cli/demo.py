"""`reconciler demo`: both flows end to end in one process, with nothing to set up.

A temporary SQLite database; the built-in fake reseller misbehaving moderately (500s, answers that time
out after the order was created, PHP warnings before the JSON, webhooks dropped and duplicated, a few
failed deliveries); the built-in fake Zoho misbehaving too (429s, a 500, a sales order created whose answer
never comes); the public webhook listener; a receiver for the customer notifications and one for T2Mobile's
events, each verifying every signature; and the daemon with every job, all on 127.0.0.1. The shop's orders are
inserted as a shop would; T2Mobile's are posted to the partner intake API over HTTP (one of them twice with the
same Idempotency-Key, as a client retrying after a lost answer), and one a shop system inserted straight into
zoho_orders names a product not in the catalogue (the API refuses it). The demo watches until each one is settled (in-doubt ones by reconciliation
with the reseller's history, or by their sales order's reference in Zoho) and prints what happened.
"""
from __future__ import annotations

import base64
import contextlib
import os
import random
import secrets
import shutil
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import click
import requests
from sqlalchemy import Engine, Table
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from reconciler.app import assemble
from reconciler.config import Config, load_config
from reconciler.engine.clock import utcnow
from reconciler.engine.db import make_engine
from reconciler.engine.logs import configure_logging
from reconciler.engine.migrate import migrate
from reconciler.engine.schema import (
    DEAD, IN_DOUBT, IN_FLIGHT, ORDER_STATUSES, QUEUED, TERMINAL_STATUSES, inbound_webhooks, mtn_orders,
    webhook_deliveries, zoho_orders,
)
from reconciler.engine.stats import count_rows, table_stats, transitions_from
from reconciler.http.listener import HttpListener, Request, Response
from reconciler.providers.mtn.fake import PHP_WARNING, FakeMtn, MtnFaults
from reconciler.providers.mtn.orders import enqueue_mtn, mtn_orders_in
from reconciler.providers.zoho.fake import FakeZoho, ZohoFaults
from reconciler.providers.zoho.orders import enqueue_zoho, zoho_orders_in
from reconciler.webhooks.deliveries import delivery_counts

DEADLINE_SECONDS = 60.0
SIZES_GB = (1, 2, 3, 5, 10)  # plans the fake sells
MTN_PREFIXES = ("24", "25", "53", "54", "55", "59")
TENURES_ORDERED = ("1_MONTH", "3_MONTHS", "6_MONTHS", "12_MONTHS")


def faults() -> MtnFaults:
    """Moderate trouble: a few 500s (some after creating the order), two answers that time out after
    creating it (held past mtn.request_timeout_seconds), 5% failed deliveries, 10% of webhooks dropped
    and 10% sent twice, several words for one status."""
    return MtnFaults(error_5xx_rate=0.08, error_5xx_after_create_rate=0.04, timeout_after_create=2,
                     timeout_sleep_seconds=2.5, failure_rate=0.05, webhook_drop_rate=0.1, webhook_duplicate_rate=0.1,
                     processing_words=("processing", "queued"), completed_words=("success", "delivered"))


ZOHO_WINDOW_SECONDS, ZOHO_CALLS_PER_WINDOW = 2.0, 20  # Zoho's 100 a minute, scaled down so the demo shows it


def zoho_faults() -> ZohoFaults:
    """Moderate trouble: three 429s, one 500, and one sales order created whose answer never comes (held past
    zoho.request_timeout_seconds), so its order is in doubt until its reference is found in Zoho; and a rate
    limit of ZOHO_CALLS_PER_WINDOW calls per ZOHO_WINDOW_SECONDS, which the daemon keeps to."""
    return ZohoFaults(rate_limit_429=3, error_5xx=1, timeout_after_create=1, timeout_hold_seconds=2.5,
                      requests_per_minute=ZOHO_CALLS_PER_WINDOW, rate_window_seconds=ZOHO_WINDOW_SECONDS)


@click.command()
@click.option("--orders", "count", default=50, show_default=True, type=click.IntRange(1, 1000),
              help="How many MTN orders the shop places.")
@click.option("--licences", "licence_count", default=12, show_default=True, type=click.IntRange(0, 200),
              help="How many licence orders T2Mobile places through Zoho Books (0: the MTN flow alone).")
@click.option("--keep-db", is_flag=True, help="Keep the SQLite database afterwards (its path is printed).")
def demo(count: int, licence_count: int, keep_db: bool) -> None:
    """Both flows end to end, nothing to set up.

    A temporary SQLite database, the built-in fake reseller, the built-in fake Zoho and the daemon, all in
    this process on 127.0.0.1; no secrets needed, no other network."""
    configure_logging("WARNING")
    workdir = Path(tempfile.mkdtemp(prefix="reconciler-demo-"))
    try:
        settled = run_demo(workdir / "demo.db", count, licence_count)
    finally:
        if keep_db:
            click.echo(f"database kept: {workdir / 'demo.db'}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if not settled:
        raise click.ClickException(f"not every order was settled within {DEADLINE_SECONDS:.0f} s")


def run_demo(db_path: Path, count: int, licence_count: int = 0) -> bool:
    """Start everything, place the orders, watch them settle, stop everything, print the summary."""
    rng = random.Random(2024)
    engine = make_engine(f"sqlite:///{db_path}")
    migrate(engine)
    mtn_secret = secrets.token_hex(16)
    notifications = Notifications(new_secret())
    partner = Notifications(new_secret())
    with contextlib.ExitStack() as running:  # stopped in reverse: daemon, listeners, fakes
        receiver = HttpListener("127.0.0.1", 0, 65536, {("POST", "/notify"): notifications.receive,
                                                         ("POST", "/t2mobile/events"): partner.receive}).start()
        running.callback(receiver.stop)
        fake = FakeMtn(api_key=secrets.token_hex(16), webhook_secret=mtn_secret, balance=100_000.0,
                       faults=faults(), rng=random.Random(7), auto_process_seconds=0.3).start()
        running.callback(fake.stop)
        zoho = FakeZoho(client_secret=secrets.token_hex(16), refresh_token=secrets.token_hex(16),
                        faults=zoho_faults()).start()
        running.callback(zoho.stop)
        config = demo_config(f"sqlite:///{db_path}", fake, mtn_secret, notifications.secret, zoho,
                             f"http://127.0.0.1:{receiver.port}/t2mobile/events", partner.secret)
        stop = threading.Event()
        assembly = assemble(config, engine, stop=stop)  # the daemon exactly as `reconciler run` builds it
        public = assembly.public_listener().start()
        running.callback(public.stop)
        fake.webhook_url = f"http://127.0.0.1:{public.port}/api/webhook/mtn"
        daemon = threading.Thread(target=assembly.daemon().run, name="demo-daemon", daemon=True)
        daemon.start()
        running.callback(daemon.join, config.daemon.shutdown_grace_seconds + 5)
        running.callback(stop.set)

        click.echo(f"reconciler demo: {count} MTN orders through a fake reseller that misbehaves "
                   f"(500s, timeouts after creating, dropped and duplicated webhooks)")
        if licence_count:
            click.echo(f"  and {licence_count} T2Mobile licence orders through a fake Zoho Books that misbehaves "
                       f"(429s, a 500, a sales order created whose answer never comes)")
        click.echo(f"  fake reseller {fake.url}, fake Zoho {zoho.url}, webhook listener 127.0.0.1:{public.port}, "
                   f"notification receiver 127.0.0.1:{receiver.port}, database {db_path}")
        notify_url = f"http://127.0.0.1:{receiver.port}/notify"
        for i, (phone, size) in enumerate(shop_orders(count, rng), 1):
            enqueue_mtn(engine, f"demo-{i:04d}", phone, size, "MTN", notify_url)
        t2mobile = T2Mobile(f"http://127.0.0.1:{public.port}", config.partner.api_keys)
        for order in licence_orders(licence_count, rng):
            if not t2mobile.place(order):
                enqueue_zoho(engine, **order)  # refused by the API: a shop system inserts it as it is
        started = time.monotonic()
        settled = watch(engine, fake, notifications, partner, count + licence_count, started, rng)
        elapsed = time.monotonic() - started
        statuses = t2mobile.statuses()  # while the listener still answers
    summary(engine, fake, notifications, count, elapsed)
    if licence_count:
        zoho_summary(engine, zoho, partner, licence_count)
        t2mobile.summary(statuses)
    engine.dispose()
    return settled


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def demo_config(db_url: str, fake: FakeMtn, mtn_secret: str, notify_secret: str, zoho: FakeZoho,
                partner_url: str, partner_secret: str) -> Config:
    """Short intervals so the story fits in seconds; leases longer than one call, as the config demands."""
    return load_config(env={
        **zoho.environment(), "RECONCILER_PARTNER_WEBHOOK_URL": partner_url,
        "RECONCILER_PARTNER_WEBHOOK_SECRET": partner_secret, "RECONCILER_PARTNER_API_KEYS": secrets.token_hex(16),
        "RECONCILER_PARTNER_REQUESTS_PER_MINUTE": "10000",
        "RECONCILER_ZOHO_CONNECT_TIMEOUT_SECONDS": "1", "RECONCILER_ZOHO_REQUEST_TIMEOUT_SECONDS": "2",
        "RECONCILER_ZOHO_POLL_INTERVAL_SECONDS": "0.2", "RECONCILER_ZOHO_IN_DOUBT_GRACE_SECONDS": "3",
        "RECONCILER_ZOHO_RETRY_SCHEDULE_SECONDS": "1,2,3",
        "RECONCILER_ZOHO_RATE_WINDOW_SECONDS": str(ZOHO_WINDOW_SECONDS),
        "RECONCILER_ZOHO_REQUESTS_PER_MINUTE": str(ZOHO_CALLS_PER_WINDOW),
        "RECONCILER_DATABASE_URL": db_url,
        "RECONCILER_MTN_BASE_URL": fake.url, "RECONCILER_MTN_API_KEY": fake.api_key,
        "RECONCILER_MTN_WEBHOOK_SECRET": mtn_secret, "RECONCILER_NOTIFY_WEBHOOK_SECRET": notify_secret,
        "RECONCILER_RECEIVER_HOST": "127.0.0.1", "RECONCILER_RECEIVER_PORT": "0",
        "RECONCILER_MTN_CONNECT_TIMEOUT_SECONDS": "1", "RECONCILER_MTN_REQUEST_TIMEOUT_SECONDS": "2",
        "RECONCILER_MTN_POLL_INTERVAL_SECONDS": "0.2", "RECONCILER_MTN_RECONCILE_INTERVAL_SECONDS": "2",
        "RECONCILER_MTN_IN_DOUBT_GRACE_SECONDS": "5", "RECONCILER_MTN_RETRY_SCHEDULE_SECONDS": "1,2,3",
        "RECONCILER_MTN_RATE_LIMIT_PAUSE_SECONDS": "1", "RECONCILER_MTN_BUNDLES": ",".join(f"{size}:{price}" for size, price in fake.bundles.items()),
        "RECONCILER_WEBHOOKS_POLL_INTERVAL_SECONDS": "0.2", "RECONCILER_WEBHOOKS_CONNECT_TIMEOUT_SECONDS": "1",
        "RECONCILER_WEBHOOKS_TIMEOUT_SECONDS": "3", "RECONCILER_WEBHOOKS_MAX_PER_SECOND": "500",
        "RECONCILER_PARTNER_RETRY_SCHEDULE_SECONDS": "0.5,1,2",
        "RECONCILER_DAEMON_BATCH_SIZE": "25", "RECONCILER_DAEMON_LEASE_SECONDS": "10",
        "RECONCILER_DAEMON_RESCUE_INTERVAL_SECONDS": "1", "RECONCILER_DAEMON_METRICS_INTERVAL_SECONDS": "5",
        "RECONCILER_DAEMON_SHUTDOWN_GRACE_SECONDS": "5",
    })


def shop_orders(count: int, rng: random.Random) -> list[tuple[str, int]]:
    """Distinct recipients, typed the ways shops type them; a few are not MTN numbers at all."""
    forms = ("0{p}{a}{b}", "+233 {p} {a} {b}", "233{p}{a}{b}", "0{p}-{a}-{b}", "{p}{a}{b}")
    orders = []
    for i, number in enumerate(rng.sample(range(10 ** 7), count)):
        a, b = f"{number:07d}"[:3], f"{number:07d}"[3:]
        if i % 25 == 7:
            phone = f"020 {a} {b}"  # a Telecel number ordered as MTN
        elif i % 25 == 19:
            phone = f"+233 24 {a} {b[:2]}"  # digits missing
        else:
            phone = rng.choice(forms).format(p=rng.choice(MTN_PREFIXES), a=a, b=b)
        orders.append((phone, rng.choice(SIZES_GB)))
    return orders


def licence_orders(count: int, rng: random.Random) -> list[dict]:
    """T2Mobile's orders: distinct customers, every fourth one renewing the customer before it (same customer and
    product while the licence is active), and one for a product not in the catalogue."""
    orders = []
    for i in range(1, count + 1):
        customer = i - 1 if i % 4 == 0 else i
        orders.append({"order_id": f"T2M-DEMO-{i:04d}", "product_id": "ZOHO_CRM_STD" if i != 7 else "ZOHO_CRM_PRO",
                       "tenure": rng.choice(TENURES_ORDERED), "customer_id": f"CUST-{customer:04d}",
                       "customer_name": f"Customer {customer}", "customer_email": f"customer{customer}@example.ng",
                       "customer_phone": f"+234 803 {rng.randrange(10 ** 7):07d}"})
    return orders


class T2Mobile:
    """T2Mobile's end of the partner intake API: reads the catalogue, posts each order with a new Idempotency-Key
    (the first one twice, as after a lost answer), and at the end reads every order's status back."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"
        self.products = self.session.get(f"{base_url}/t2mobile/products", timeout=10).json()
        self.answers: Counter[int] = Counter()
        self.replayed = 0
        self.refused: list[str] = []  # "orderId: field, field"
        self.placed: list[str] = []

    def place(self, order: dict) -> bool:
        """POST /t2mobile/fulfilment; False when the API refused the order (400)."""
        body = {"orderId": order["order_id"], "productId": order["product_id"], "tenure": order["tenure"],
                "customerId": order["customer_id"], "customerName": order["customer_name"],
                "customerEmail": order["customer_email"], "customerPhone": order["customer_phone"]}
        key = secrets.token_hex(16)
        for attempt in range(2 if not self.placed else 1):  # the first order is sent again, same key
            answer = self.session.post(f"{self.base_url}/t2mobile/fulfilment", json=body, timeout=10,
                                       headers={"Idempotency-Key": key})
            self.answers[answer.status_code] += 1
            self.replayed += answer.headers.get("Idempotent-Replayed") == "true"
        if answer.status_code == 400:
            self.refused.append(f"{order['order_id']}: {', '.join(sorted(answer.json().get('fields', {})))}")
            return False
        self.placed.append(order["order_id"])
        return True

    def statuses(self) -> Counter[str]:
        """GET /t2mobile/orders/{orderId} for every order placed through the API."""
        return Counter(self.session.get(f"{self.base_url}/t2mobile/orders/{order_id}", timeout=10).json()["status"]
                       for order_id in self.placed)

    def summary(self, statuses: Counter[str]) -> None:
        answers = ", ".join(f"{n} answered {code}" for code, n in sorted(self.answers.items()))
        click.echo(f"T2Mobile's calls to the intake API: catalogue of {len(self.products['products'])} product(s); "
                   f"{sum(self.answers.values())} POST /t2mobile/fulfilment ({answers}); {self.placed[0]} posted "
                   f"twice with one Idempotency-Key: {self.replayed} stored answer replayed, no second order")
        for refusal in self.refused:
            click.echo(f"  refused (400), then inserted by a shop system straight into zoho_orders: {refusal}")
        shown = ", ".join(f"{status} {n}" for status, n in sorted(statuses.items()))
        click.echo(f"  status read back through GET /t2mobile/orders/{{orderId}}: {shown}")


class Notifications:
    """The shop's end of the customer notifications: verifies each one (Standard Webhooks) and counts it."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self._verifier = Webhook(secret)
        self._lock = threading.Lock()
        self.types: Counter[str] = Counter()
        self.ids: set[str] = set()
        self.bad = 0

    def receive(self, request: Request) -> Response:
        try:
            event = self._verifier.verify(request.body, request.headers)
        except WebhookVerificationError:
            with self._lock:
                self.bad += 1
            return Response.error(401, "bad_signature", "bad signature")
        with self._lock:
            if request.headers["webhook-id"] not in self.ids:
                self.ids.add(request.headers["webhook-id"])
                self.types[event["type"]] += 1
        return Response.json(200, {"ok": True})

    def delivered(self, engine: Engine, table: Table, what: str, receiver: str) -> str:
        """One line: the events about `table`'s orders delivered or dead, and what this receiver verified."""
        deliveries = delivery_counts(engine)
        kinds = ", ".join(f"{t} {n}" for t, n in sorted(self.types.items()))
        bad = f", {self.bad} refused for a bad signature" if self.bad else ""
        return (f"{what}: {deliveries.get((table.name, 'delivered'), 0)} delivered, "
                f"{deliveries.get((table.name, DEAD), 0)} dead; {receiver} verified {len(self.ids)} signatures "
                f"({kinds}){bad}")


def watch(engine: Engine, fake: FakeMtn, notifications: Notifications, partner: Notifications, count: int,
          started: float, rng: random.Random) -> bool:
    """A line a second until every order is settled and its events delivered; False at the deadline."""
    while True:
        time.sleep(1)
        fake.configure(noise_prefix=PHP_WARNING if rng.random() < 0.3 else "")  # PHP warnings now and then
        counts = (Counter(table_stats(engine, mtn_orders, utcnow()).counts)
                  + Counter(table_stats(engine, zoho_orders, utcnow()).counts))
        deliveries = table_stats(engine, webhook_deliveries, utcnow()).counts
        done = sum(counts.get(s, 0) for s in TERMINAL_STATUSES)
        shown = ", ".join(f"{s} {counts[s]}" for s in ORDER_STATUSES if counts.get(s))
        click.echo(f"  [{time.monotonic() - started:4.0f}s] settled {done}/{count}  ({shown})  "
                   f"notifications {len(notifications.ids)}, partner events {len(partner.ids)}")
        if done == count and not deliveries.get(QUEUED) and not deliveries.get(IN_FLIGHT):
            return True
        if time.monotonic() - started > DEADLINE_SECONDS:
            return False


def summary(engine: Engine, fake: FakeMtn, notifications: Notifications, count: int, elapsed: float) -> None:
    status_table(engine, mtn_orders, f"of {count} orders settled in {elapsed:.1f} s")
    others = mtn_orders_in(engine, [s for s in ORDER_STATUSES if s != "completed"])
    if others:
        click.echo("not completed:")
        for o in others:
            why = o["reject_reason"] or o["last_error"] or ""
            click.echo(f"  {o['shop_order_id']}  {o['status']:<9} {o['recipient_phone']!r:<20} {why}")
    left = transitions_from(engine, mtn_orders, IN_DOUBT)
    absent = sum(n for (to, _), n in left.items() if to in (QUEUED, DEAD))
    went = sum(n for (to, _), n in transitions_from(engine, mtn_orders, IN_FLIGHT).items() if to == IN_DOUBT)
    click.echo(f"in doubt (the reseller may have had the order): {went}; settled by its history: "
               f"{sum(left.values()) - absent} found there, {absent} proven absent and sent again")
    answered = sum(1 for w in fake.webhooks if w.status_code == 200)
    stored = count_rows(engine, inbound_webhooks)
    click.echo(f"reseller: {fake.create_requests} order requests, {fake.created_count} orders created; "
               f"webhooks: {answered} received, {answered - stored} duplicates ignored, "
               f"{fake.webhooks_dropped} never sent (settled from history)")
    click.echo(notifications.delivered(engine, mtn_orders, "customer notifications", "the shop"))


def zoho_summary(engine: Engine, zoho: FakeZoho, partner: Notifications, count: int) -> None:
    status_table(engine, zoho_orders, f"of {count} T2Mobile licence orders settled")
    for o in zoho_orders_in(engine, [s for s in ORDER_STATUSES if s != "completed"]):
        click.echo(f"  {o['order_id']}  {o['status']:<9} {o['product_id']} {o['tenure']}  "
                   f"{o['reject_reason'] or o['last_error'] or ''}")
    went = sum(n for (to, _), n in transitions_from(engine, zoho_orders, IN_FLIGHT).items() if to == IN_DOUBT)
    adopted = sum(n for (to, cause), n in transitions_from(engine, zoho_orders, IN_FLIGHT).items()
                  if cause == "adopted")
    references = Counter(order["reference_number"] for order in zoho.salesorders)
    twice = sum(1 for n in references.values() if n > 1)
    click.echo(f"Zoho: {zoho.api_calls} API calls ({zoho.answered_429} answered 429), {zoho.token_requests} token "
               f"request(s); {len(references)} sales orders, {'none' if not twice else twice} created twice for "
               f"one order; in doubt (the answer to a create was lost): {went}, adopted by reference: {adopted}")
    click.echo(partner.delivered(engine, zoho_orders, "partner events", "T2Mobile"))


def status_table(engine: Engine, table: Table, headline: str) -> None:
    """How many of the table's orders are settled, and a count per status (every final one, even at 0)."""
    counts = table_stats(engine, table, utcnow()).counts
    click.echo(f"\n{sum(counts.get(s, 0) for s in TERMINAL_STATUSES)} {headline}")
    click.echo(f"  {'status':<10} {'orders':>6}")
    for status in ORDER_STATUSES:
        if counts.get(status) or status in TERMINAL_STATUSES:
            click.echo(f"  {status:<10} {counts.get(status, 0):>6}")
