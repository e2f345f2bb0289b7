"""`reconciler enqueue zoho` and `reconciler fake zoho`: the Zoho flow by hand."""
from __future__ import annotations

import secrets
import signal
import threading
from typing import Any

import click

from reconciler.cli.support import App, FaultKnobs
from reconciler.providers.zoho.catalogue import Rejection, check_order
from reconciler.providers.zoho.fake import ZohoFaults, serve_fake_zoho
from reconciler.providers.zoho.orders import DuplicateOrder, enqueue_zoho

_OPTIONS = {"order_id": "--order-id", "customer_id": "--customer-id", "customer_name": "--name",
            "customer_email": "--email", "product_id": "--product", "tenure": "--tenure"}


@click.command("zoho")
@click.option("--order-id", help="The T2Mobile order id, the sales order's reference (default: a new cli-... id).")
@click.option("--product", "product_id", required=True, help="A product of partner.products, e.g. ZOHO_CRM_STD.")
@click.option("--tenure", required=True, help="1_MONTH, 3_MONTHS, 6_MONTHS, 12_MONTHS or 24_MONTHS (one the "
                                              "product is priced for).")
@click.option("--customer-id", required=True, help="T2Mobile's id of the customer (one licence per customer and "
                                                   "product: an order while it is active renews it).")
@click.option("--name", "customer_name", required=True, help="The customer's name, for the Zoho contact.")
@click.option("--email", "customer_email", required=True, help="The customer's e-mail: the Zoho contact's key.")
@click.option("--phone", "customer_phone", help="The customer's phone, for the Zoho contact.")
@click.pass_obj
def enqueue_zoho_order(app: App, order_id: str | None, product_id: str, tenure: str, customer_id: str,
                       customer_name: str, customer_email: str, customer_phone: str | None) -> None:
    """Queue a T2Mobile licence order; prints its order id."""
    if order_id is not None and not order_id.strip():
        raise click.BadParameter("must not be empty (leave it out for a new cli-... id)", param_hint="--order-id")
    order = {"order_id": order_id or f"cli-{secrets.token_hex(6)}", "customer_id": customer_id,
             "customer_name": customer_name, "customer_email": customer_email, "product_id": product_id,
             "tenure": tenure}
    checked = check_order(order, app.config.partner.products)
    if isinstance(checked, Rejection):  # the daemon would reject it: say so now, exit 2
        raise click.BadParameter(checked.detail, param_hint=_OPTIONS[checked.field])
    try:
        row_id = enqueue_zoho(app.engine(), order["order_id"], product_id.strip(), tenure.strip(),
                              customer_id.strip(), customer_name.strip(), customer_email.strip(),
                              customer_phone.strip() if customer_phone else None)
    except DuplicateOrder as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(order["order_id"])
    click.echo(f"queued as zoho_orders id {row_id}", err=True)


@click.command("zoho")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 in a container, so the daemon's container reaches it).")
@click.option("--port", default=8501, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0: any free one).")
@click.option("--faults", "knobs", type=FaultKnobs(ZohoFaults, "rate_limit_429=3"), default="",
              help="Misbehaviour or limits, e.g. 'token_expires_in=60,requests_per_day=200,error_5xx=2' "
                   "(every field of ZohoFaults).")
def fake_zoho(host: str, port: int, knobs: dict[str, Any]) -> None:
    """Run the fake Zoho (accounts server and Books API) until Ctrl-C, to try the daemon by hand.

    Prints the zoho.* settings that point the daemon at it, as the environment variables the daemon reads."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        faults = ZohoFaults(**knobs)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--faults") from None
    try:
        fake = serve_fake_zoho(host, port, faults)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}; try another --port") from None
    click.echo(f"fake Zoho Books on {fake.api_url}, accounts server on {fake.accounts_url}")
    for name, value in fake.environment().items():
        click.echo(f"{name}={value}")
    click.echo("Ctrl-C stops it.", err=True)
    stop.wait()
    fake.stop()
    click.echo(f"stopped: {len(fake.salesorders)} sales orders created, {fake.api_calls} API calls, "
               f"{fake.token_requests} token requests", err=True)
