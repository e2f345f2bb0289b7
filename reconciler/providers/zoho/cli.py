"""`reconciler fake zoho`: the Zoho flow by hand."""
from __future__ import annotations

import signal
import threading
from typing import Any

import click

from reconciler.cli.support import FaultKnobs
from reconciler.providers.zoho.fake import ZohoFaults, serve_fake_zoho


@click.command("zoho")
@click.option("--port", default=8501, show_default=True, type=click.IntRange(0, 65535),
              help="Port on 127.0.0.1 (0: any free one).")
@click.option("--faults", "knobs", type=FaultKnobs(ZohoFaults, "rate_limit_429=3"), default="",
              help="Misbehaviour or limits, e.g. 'token_expires_in=60,requests_per_day=200,error_5xx=2' "
                   "(every field of ZohoFaults).")
def fake_zoho(port: int, knobs: dict[str, Any]) -> None:
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
        fake = serve_fake_zoho("127.0.0.1", port, faults)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}; try another --port") from None
    click.echo(f"fake Zoho Books on {fake.api_url}, accounts server on {fake.accounts_url}")
    for name, value in fake.environment().items():
        click.echo(f"{name}={value}")
    click.echo("Ctrl-C stops it.", err=True)
    stop.wait()
    fake.stop()
    click.echo(f"stopped: {len(fake.salesorders)} sales orders created, {fake.api_calls} API calls, "
               f"{fake.token_requests} token requests", err=True)
