"""`reconciler webhooks`: list deliveries with their attempts, replay them with the same webhook-id."""
from __future__ import annotations

import json
from datetime import datetime

import click

from reconciler.cli.support import App, When, actor
from reconciler.engine.clock import utcnow
from reconciler.engine.logs import one_line
from reconciler.engine.outbox import requeue
from reconciler.engine.schema import DELIVERY_STATUSES, webhook_deliveries
from reconciler.webhooks.deliveries import attempts_of, find_deliveries
from reconciler.webhooks.endpoints import enable


@click.group()
def webhooks() -> None:
    """Outgoing webhook deliveries."""


@webhooks.command("list")
@click.option("--status", type=click.Choice(DELIVERY_STATUSES), help="Only deliveries in this status.")
@click.option("--order", "order_ref", help="Only events of this order (shop or T2Mobile order id).")
@click.option("--limit", default=50, show_default=True, help="Newest deliveries shown.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
def list_deliveries(app: App, status: str | None, order_ref: str | None, limit: int, as_json: bool) -> None:
    """Deliveries, newest first, each with every attempt (status code, latency, error, response excerpt)."""
    engine = app.engine()
    rows = find_deliveries(engine, status=status, order_ref=order_ref, limit=limit)
    attempts = attempts_of(engine, [r["id"] for r in rows])
    for row in rows:
        tries = attempts.get(row["id"], [])
        if as_json:
            click.echo(json.dumps({**_plain(row), "attempt_log": [_plain(a) for a in tries]}))
            continue
        when = f"delivered {row['delivered_at']:%Y-%m-%d %H:%M:%S}" if row["delivered_at"] else (
            f"next {row['next_attempt_at']:%Y-%m-%d %H:%M:%S}" if row["status"] == "queued" else "")
        click.echo(f"{row['id']:>6} {row['event_id']} {row['event_type']} order={row['order_ref']} "
                   f"seq={row['sequence']} {row['status']} attempts={row['attempts']} {when}  {row['endpoint_url']}")
        for a in tries:
            answer = a["status_code"] or a["error_class"]
            excerpt = one_line(a["response_excerpt"] or "", 80)
            click.echo(f"         #{a['attempt']} {a['attempted_at']:%Y-%m-%d %H:%M:%S} {answer} "
                       f"{a['latency_ms']}ms {a['error_class'] or 'ok'} {excerpt}".rstrip())


@webhooks.command("replay")
@click.argument("refs", nargs=-1)
@click.option("--since", type=When(), help="Deliveries of events since WHEN (ISO time, or 2h, 3d ...).")
@click.option("--status", type=click.Choice(DELIVERY_STATUSES), help="With --since: only this status, e.g. dead.")
@click.pass_obj
def replay(app: App, refs: tuple[str, ...], since: datetime | None, status: str | None) -> None:
    """Send deliveries again with their original webhook-id. REFS are event ids (msg_...) or delivery ids.

    A 410-disabled endpoint is enabled again: replaying to it is a person's decision to try it."""
    if not refs and since is None:
        raise click.UsageError("name deliveries (REFS) or give --since WHEN")
    engine = app.engine()
    rows = find_deliveries(engine, refs=refs, since=since, status=status)
    missing = set(refs) - {r["event_id"] for r in rows} - {str(r["id"]) for r in rows}
    if missing:
        raise click.ClickException(f"no such delivery: {', '.join(sorted(missing))}")
    now = utcnow()
    for url in enable(engine, {r["endpoint_url"] for r in rows}, now):
        click.echo(f"endpoint enabled again: {url}")
    requeued = requeue(engine, webhook_deliveries, [r["id"] for r in rows], actor(), "replayed", now)
    skipped = len(rows) - len(requeued)
    click.echo(f"replaying {len(requeued)} deliveries" + (f" ({skipped} in flight left alone)" if skipped else ""))


def _plain(row) -> dict:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in dict(row).items() if k != "payload"}
