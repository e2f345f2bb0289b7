"""`reconciler order show REF`: one order's whole story, for the person asked "what happened to order X?"."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Mapping

import click

from reconciler.app import PROVIDERS
from reconciler.cli.support import App
from reconciler.engine.story import EVENT, PROVIDER_CALL, TRANSITION, WEBHOOK_IN, OrderRecord, StoryEntry, order_story


@click.group()
def order() -> None:
    """One order, whatever its provider."""


@order.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@click.pass_obj
def show(app: App, ref: str, as_json: bool) -> None:
    """Everything that happened to one order, in time order.

    Its transitions (cause, worker), each provider call (status, latency, response excerpt), the provider
    webhooks about it and each event sent about it with every delivery attempt. REF is the order's id or
    its own reference (an MTN shop_order_id, a T2Mobile order id or its Zoho sales order id)."""
    engine = app.engine()
    found: list[OrderRecord] = []
    for provider in PROVIDERS:
        try:
            record = provider.find_order(engine, ref)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        if record is not None:
            found.append(record)
    if not found:
        raise click.ClickException(f"no order with id or reference {ref!r}")
    if len(found) > 1:
        raise click.ClickException(f"{ref!r} names orders of several providers: "
                                   f"{', '.join(f'{r.table} id {r.row_id}' for r in found)}; give the reference")
    record = found[0]
    story = order_story(engine, record)
    if as_json:
        click.echo(json.dumps({"provider": record.provider, "table": record.table, "id": record.row_id,
                               "order": _plain(record.summary),
                               "story": [{"at": e.at, "kind": e.kind, **e.details} for e in story]},
                              indent=2, default=_json_default))
        return
    summary = record.summary
    click.echo(f"{record.provider} order {record.order_ref} ({record.table} id {record.row_id}): {summary['status']}")
    for name, value in summary.items():
        if value is not None and name != "status":
            click.echo(f"  {name:<18} {_text(value)}")
    if not story:
        click.echo("no history yet")
    for entry in story:
        click.echo(f"{entry.at:%Y-%m-%d %H:%M:%S.%f}"[:-3] + f"  {_line(entry)}")
        if entry.kind == EVENT:
            for a in entry.details["attempts"]:
                answer = a["status_code"] or a["error_class"]
                click.echo(f"    attempt {a['attempt']} at {a['at']:%H:%M:%S}: {answer} in {a['latency_ms']} ms"
                           + (f"  {a['response_excerpt'][:120]}" if a["response_excerpt"] else ""))


def _line(entry: StoryEntry) -> str:
    d = entry.details
    if entry.kind == TRANSITION:
        return f"status      {d['from'] or '-'} -> {d['to']}  ({d['cause']}, by {d['worker'] or '?'})"
    if entry.kind == PROVIDER_CALL:
        answer = d["status_code"] if d["status_code"] is not None else f"no answer ({d['error']})"
        return (f"call        {d['method']} {d['url']} -> {answer} in {d['latency_ms']} ms"
                + (f"  {d['response_excerpt'][:160]}" if d["response_excerpt"] else ""))
    if entry.kind == WEBHOOK_IN:
        verdict = "signed" if d["signature_valid"] else "BAD SIGNATURE"
        done = (f"not applied: {d['process_error']}" if d["process_error"] else
                "applied" if d["processed_at"] else "waiting")
        return f"webhook in  #{d['id']} {verdict}, {done}  {(d['body_excerpt'] or '')[:160]}"
    return (f"event       {d['type']} {d['event_id']} seq {d['sequence']} -> {d['endpoint_url']}: {d['status']}, "
            f"{len(d['attempts'])} attempt(s)")


def _text(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if isinstance(value, datetime) else str(value)


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")
