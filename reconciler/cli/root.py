"""The `reconciler` command line. Exit codes: 0 ok, 1 failure, 2 usage or config error."""
from __future__ import annotations

import json
import logging
import signal
import threading

import click
from sqlalchemy import Engine

from reconciler.app import PROVIDERS, assemble
from reconciler.cli.demo import demo
from reconciler.cli.orders import order
from reconciler.cli.support import App
from reconciler.cli.webhooks import webhooks
from reconciler.coordination.pauses import Pauses
from reconciler.coordination.provider_state import load_states
from reconciler.engine.clock import utcnow
from reconciler.engine.logs import configure_logging
from reconciler.engine.migrate import migrate
from reconciler.engine.schema import DEAD, OUTBOX_TABLES, STATUSES_BY_TABLE
from reconciler.engine.startup import wait_for_schema
from reconciler.engine.stats import table_stats
from reconciler.webhooks.endpoints import WEBHOOK_PAUSE_PREFIX


@click.group()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="RECONCILER_CONFIG",
              help="YAML config file (default: ./config.yaml when present; env RECONCILER_CONFIG).")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Fulfil shop orders through providers and keep their status true."""
    ctx.obj = App(config_path)


@cli.command("check-config")
@click.pass_obj
def check_config(app: App) -> None:
    """Validate the config and print it, secrets shown only as <set>/<unset>."""
    click.echo(json.dumps(app.config.redacted(), indent=2))
    click.echo("config ok", err=True)


@cli.group()
def db() -> None:
    """Database schema commands."""


@db.command("migrate")
@click.pass_obj
def db_migrate(app: App) -> None:
    """Apply pending schema migrations (safe to run from several replicas at once)."""
    applied = migrate(app.engine())
    if applied:
        for m in applied:
            click.echo(f"applied {m.version:03d}_{m.name}")
    else:
        click.echo("schema up to date")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
@click.pass_obj
def status(app: App, as_json: bool) -> None:
    """Rows per outbox table and status, the oldest queued age and the dead count; paused providers."""
    engine = app.engine()
    now = utcnow()
    report = {}
    for table in OUTBOX_TABLES:
        stats = table_stats(engine, table, now)
        report[table.name] = {
            "counts": {s: stats.counts.get(s, 0) for s in STATUSES_BY_TABLE[table.name]},
            "oldest_queued_age_seconds": round(stats.oldest_queued_age_seconds, 1),
            "dead": stats.counts.get(DEAD, 0),
        }
    providers = provider_reports(engine)
    if as_json:
        click.echo(json.dumps({**report, "providers": providers}, indent=2))
        return
    for name, entry in report.items():
        click.echo(f"{name}  (oldest queued {entry['oldest_queued_age_seconds']:.0f}s, dead {entry['dead']})")
        for state, count in entry["counts"].items():
            click.echo(f"  {state:<10} {count:>10}")
    for name, entry in providers.items():
        flow = f"PAUSED ({entry['paused_reason']}) until {entry['paused_until']}" if entry["paused"] else "open"
        balance = f", balance {entry['balance']} at {entry['balance_checked_at']}" if entry["balance"] else ""
        click.echo(f"{name}: {flow}{balance}")


def provider_reports(engine: Engine) -> dict[str, dict]:
    """Why a provider's orders may be waiting: its pause, and its last balance reading."""
    balances = {state.provider: state for state in load_states(engine)}
    paused = {p.key: p for p in Pauses(engine).all_paused() if not p.key.startswith(WEBHOOK_PAUSE_PREFIX)}
    reports = {}
    for provider in sorted(set(balances) | set(paused)):
        pause, state = paused.get(provider), balances.get(provider)
        reports[provider] = {
            "paused": pause is not None, "paused_reason": pause.reason if pause else None,
            "paused_until": pause.paused_until.isoformat() if pause else None,
            "balance": str(state.balance) if state and state.balance is not None else None,
            "balance_checked_at": state.balance_checked_at.isoformat() if state and state.balance_checked_at else None}
    return reports


@cli.command()
@click.pass_obj
def run(app: App) -> None:
    """Run the daemon until SIGTERM or SIGINT."""
    config = app.config
    configure_logging(config.daemon.log_level, config.daemon.log_format)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    engine = app.engine()
    if not wait_for_schema(engine, stop):
        return
    assembly = assemble(config, engine, stop=stop)
    daemon = assembly.daemon()
    admin = assembly.admin_listener(daemon).start()
    public = assembly.public_listener().start()
    log = logging.getLogger("reconciler")
    log.info("admin listener on %s:%d", config.admin.host, admin.port)
    log.info("public listener on %s:%d", config.receiver.host, public.port)
    try:
        daemon.run()
    finally:
        public.stop()
        admin.stop()


@cli.group()
def enqueue() -> None:
    """Insert an order as a shop system would."""


@cli.group()
def fake() -> None:
    """Run a fake provider standalone, to try the daemon by hand."""


for provider in PROVIDERS:
    enqueue.add_command(provider.enqueue_command())
    fake.add_command(provider.fake_command())
    for command in provider.commands():
        cli.add_command(command)
for command in (webhooks, demo, order):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="reconciler")


