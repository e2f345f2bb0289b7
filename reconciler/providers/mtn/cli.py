"""`reconciler enqueue mtn`, `retry`, `balance`, `reconcile`, `fake mtn`: the MTN flow by hand."""
from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sys
import threading
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator, Mapping

import click
from sqlalchemy import Engine

from reconciler.cli.support import App, FaultKnobs, When, actor
from reconciler.engine.clock import utcnow
from reconciler.engine.schema import COMPLETED, IN_DOUBT, IN_FLIGHT, QUEUED, SUBMITTED
from reconciler.providers.mtn.account import MtnAccount
from reconciler.providers.mtn.client import MtnError, mtn_client
from reconciler.providers.mtn.fake import FakeMtn, MtnFaults
from reconciler.providers.mtn.orders import AmbiguousOrder, DuplicateOrder, enqueue_mtn, find_mtn_order, retry_mtn_order
from reconciler.providers.mtn.outbox import outbox_policy

REFUSALS = {
    QUEUED: "is queued already: the daemon sends it when it is due (next attempt at {next_attempt_at})",
    IN_FLIGHT: "is being sent to the reseller right now",
    IN_DOUBT: ("is in doubt: the reseller may have it, and an in-doubt order is never sent again before the "
               "history proves it absent. Run `reconciler reconcile --order {ref}`: it settles the order, or "
               "queues it again itself once the history shows it absent"),
    SUBMITTED: "is at the reseller, waiting for its outcome (`reconciler reconcile --order {ref}` asks now)",
    COMPLETED: "is completed: there is nothing to try again",
}


@click.command("mtn")
@click.option("--phone", required=True, help="Recipient phone as the shop got it, e.g. '024 123 4567'.")
@click.option("--size", "size_gb", required=True, type=click.IntRange(min=1, max=2_147_483_647), help="Bundle size in GB.")
@click.option("--shop-order-id", help="The shop's order id (default: a new cli-... id).")
@click.option("--network", default="MTN", show_default=True)
@click.option("--notify-url", help="Where the customer notification for this order goes.")
@click.pass_obj
def enqueue_mtn_order(app: App, phone: str, size_gb: int, shop_order_id: str | None, network: str,
                      notify_url: str | None) -> None:
    """Queue an MTN data bundle; prints its shop_order_id."""
    if shop_order_id is not None and not shop_order_id.strip():
        raise click.BadParameter("must not be empty (leave it out for a new cli-... id)", param_hint="--shop-order-id")
    shop_order_id = shop_order_id or f"cli-{secrets.token_hex(6)}"
    try:
        row_id = enqueue_mtn(app.engine(), shop_order_id, phone, size_gb, network, notify_url)
    except DuplicateOrder as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(shop_order_id)
    click.echo(f"queued as mtn_orders id {row_id}", err=True)


@click.command()
@click.argument("ref", metavar="ORDER")
@click.pass_obj
def retry(app: App, ref: str) -> None:
    """Try a failed, rejected or dead MTN order again.

    A new attempt, now, with a fresh retry budget. ORDER is its id or its shop_order_id."""
    engine = app.engine()
    order = _find(engine, ref)
    refusal = REFUSALS.get(order["status"])
    if refusal:
        raise click.ClickException(f"order {order['shop_order_id']} "
                                   f"{refusal.format(ref=order['shop_order_id'], **order)}")
    if not retry_mtn_order(engine, order["id"], actor(), utcnow()):
        raise click.ClickException(f"order {order['shop_order_id']} changed status meanwhile; look again")
    click.echo(f"order {order['shop_order_id']} queued again (was {order['status']})")


@click.command()
@click.pass_obj
def balance(app: App) -> None:
    """Show the MTN reseller balance (and record it).

    The reading is kept in provider_state, where the daemon's submit flow finds it. A reading that works ends
    a pause for a bad key (401) at once, and a balance pause once it covers the cheapest bundle."""
    config = app.require("mtn.base_url")
    engine = app.engine()
    try:
        reading = MtnAccount(engine, mtn_client(config, engine), config.mtn, actor()).read_balance(utcnow())
    except MtnError as exc:
        raise click.ClickException(f"MTN balance unavailable: {exc.message}") from None
    threshold = config.mtn.balance_alert_threshold
    low = reading.balance < threshold
    click.echo(f"MTN balance {reading.balance}" + (f" (below mtn.balance_alert_threshold {threshold:g})" if low else ""))
    if reading.resumed:
        click.echo(f"MTN flow resumed (it was paused: {reading.resumed})")


@click.command()
@click.option("--order", "ref", help="Only this order (id or shop_order_id).")
@click.option("--since", type=When(), help="Only orders created since WHEN (ISO time, or 2h, 3d ...).")
@click.pass_obj
def reconcile(app: App, ref: str | None, since: datetime | None) -> None:
    """Match MTN orders with the reseller's history now.

    One reconciliation cycle over unsettled (in doubt, submitted) and recently completed orders, as the
    daemon runs every mtn.reconcile_interval_seconds."""
    from jobs.reconcile_mtn import ReconcileMtn

    if ref is not None and since is not None:
        raise click.UsageError("give --order or --since, not both")
    config = app.require("mtn.base_url")
    engine = app.engine()
    order = _find(engine, ref) if ref is not None else None
    only = _selection(order, since)
    job = ReconcileMtn(config.mtn, outbox_policy(config).retries, mtn_client(config, engine))
    with _progressbar("reconciling") as progress:
        report = job.cycle(engine, utcnow, actor(), only=only, progress=progress)
    if report is None:
        raise click.ClickException("the MTN order history could not be read; nothing was decided")
    click.echo(f"checked {report.checked}, settled {report.settled}, queued again {report.requeued}, "
               f"still in doubt {report.still_open}")
    if order is not None and report.checked == 0:
        click.echo(_not_checked(order, config.mtn.completed_watch_hours))


def _not_checked(order: Mapping, watch_hours: float) -> str:
    """What a cycle that did not touch this order means for it."""
    ref = order["shop_order_id"]
    if order["status"] != COMPLETED:
        return (f"order {ref} is {order['status']}: only in-doubt, submitted and completed orders are matched "
                f"with the reseller's history; nothing changed")
    watched_since = utcnow() - timedelta(hours=watch_hours)
    if order["completed_at"] is None or order["completed_at"] < watched_since:
        return (f"order {ref} completed more than mtn.completed_watch_hours ({watch_hours:g}) ago and is no "
                f"longer watched for a reversal; nothing changed")
    return f"order {ref} is completed and the reseller's history shows no reversal of it; nothing changed"


def _selection(order: Mapping | None, since: datetime | None) -> Callable[[Mapping], bool]:
    if order is not None:
        return lambda row: row["id"] == order["id"]
    if since is not None:
        return lambda order: order["created_at"] >= since
    return lambda order: True


@contextlib.contextmanager
def _progressbar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress(done, total) callback drawing a click progress bar on stderr; the bar starts at the first
    call, when the total is known."""
    with contextlib.ExitStack() as stack:
        bars: list = []

        def progress(done: int, total: int) -> None:
            if not bars:
                bars.append(stack.enter_context(click.progressbar(
                    length=total, label=label, file=sys.stderr)))
            bars[0].update(1)

        yield progress


def _find(engine: Engine, ref: str) -> Mapping:
    try:
        order = find_mtn_order(engine, ref)
    except AmbiguousOrder as exc:
        raise click.ClickException(str(exc)) from None
    if order is None:
        raise click.ClickException(f"no MTN order with id or shop_order_id {ref!r}")
    return order


@click.command("mtn")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 in a container, so the daemon's container reaches it).")
@click.option("--port", default=8500, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0: any free one).")
@click.option("--webhook-url", default="http://127.0.0.1:8080/api/webhook/mtn", show_default=True,
              help="Where order.status_changed webhooks go: the daemon's public listener.")
@click.option("--balance", "initial_balance", default=1000.0, show_default=True, type=click.FloatRange(min=0),
              help="The reseller balance to start with.")
@click.option("--settle-after", default=3.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds until an order is completed (or failed, see --faults failure_rate).")
@click.option("--faults", "knobs", type=FaultKnobs(MtnFaults, "error_5xx_rate=0.1"), default="",
              help="Misbehaviour, e.g. 'error_5xx_rate=0.1,webhook_drop_rate=0.2,failure_rate=0.05' "
                   "(every field of MtnFaults).")
def fake_mtn(host: str, port: int, webhook_url: str, initial_balance: float, settle_after: float,
             knobs: dict[str, Any]) -> None:
    """Run the fake MTN reseller until Ctrl-C, to try the daemon by hand.

    Prints its URL, API key and webhook secret as the environment variables the daemon reads. The key and secret
    are new each time, or those variables' values when set (so a deployment can share them with the daemon)."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    fake = FakeMtn(api_key=os.environ.get("RECONCILER_MTN_API_KEY") or secrets.token_hex(16),
                   webhook_secret=os.environ.get("RECONCILER_MTN_WEBHOOK_SECRET") or secrets.token_hex(16),
                   webhook_url=webhook_url, balance=initial_balance, auto_process_seconds=settle_after, host=host,
                   port=port)
    fake.configure(**knobs)
    try:
        fake.start()
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}; try another --port") from None
    click.echo(f"fake MTN reseller on {fake.url}; webhooks to {webhook_url}")
    click.echo(f"RECONCILER_MTN_BASE_URL={fake.url}")
    click.echo(f"RECONCILER_MTN_API_KEY={fake.api_key}")
    click.echo(f"RECONCILER_MTN_WEBHOOK_SECRET={fake.webhook_secret}")
    click.echo("Ctrl-C stops it.", err=True)
    stop.wait()
    fake.stop()
    click.echo(f"stopped: {fake.created_count} orders created, {len(fake.webhooks)} webhooks sent", err=True)
