"""The `reconciler` command line. Exit codes: 0 ok, 1 failure, 2 usage or config error."""
from __future__ import annotations

import errno
import json
import logging
import signal
import threading
from typing import Callable

import click
from sqlalchemy import Engine

from reconciler.app import PROVIDERS, admin, assemble, configured_providers
from reconciler.cli.demo import demo
from reconciler.cli.orders import order
from reconciler.cli.support import App, Commands, ConfigProblem, actor
from reconciler.cli.webhooks import webhooks
from reconciler.config import mask_passwords
from reconciler.coordination.pauses import Pauses
from reconciler.coordination.provider_state import load_states
from reconciler.engine.clock import utcnow
from reconciler.engine.daemon import Daemon
from reconciler.engine.db import make_engine, missing_sqlite_file
from reconciler.engine.logs import configure_logging
from reconciler.engine.migrate import migrate
from reconciler.engine.schema import DEAD, OUTBOX_TABLES, STATUSES_BY_TABLE
from reconciler.engine.startup import wait_for_schema
from reconciler.engine.stats import table_stats
from reconciler.http.admin import database_not_ready
from reconciler.http.listener import HttpListener
from reconciler.webhooks.endpoints import WEBHOOK_PAUSE_PREFIX


@click.group(cls=Commands)
@click.version_option(package_name="reconciler", prog_name="reconciler")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="RECONCILER_CONFIG",
              help="YAML config file (default: ./config.yaml when present; env RECONCILER_CONFIG).")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Fulfil shop orders through providers and keep their status true."""
    ctx.obj = App(config_path)


@cli.command("check-config")
@click.option("--connect", is_flag=True, help="Also reach the database (schema current?) and each configured provider.")
@click.pass_obj
def check_config(app: App, connect: bool) -> None:
    """Validate the config and print it, secrets shown only as <set>/<unset>.

    With --connect: one ok/FAILED line per check; exit 1 if any failed."""
    config = app.config
    click.echo(json.dumps(config.redacted(), indent=2))
    click.echo("config ok", err=True)
    if not connect:
        return
    missing = missing_sqlite_file(config.database.url)
    engine = make_engine(config.database.url) if missing is None else None  # never creates an empty SQLite file
    problem = (f"the database file {missing} does not exist: run `reconciler db migrate`" if engine is None
               else database_not_ready(engine))
    click.echo(f"database: FAILED: {problem}" if problem else "database: ok (reachable, schema current)")
    failed = problem is not None
    for provider in configured_providers(config):
        try:  # a call recorded in api_calls only when the database is usable
            click.echo(f"{provider.name}: ok ({provider.check(config, None if failed else engine)})")
        except Exception as exc:  # each check reports its own failure; the next one still runs
            failed = True
            click.echo(f"{provider.name}: FAILED: {mask_passwords(str(exc)) or type(exc).__name__}")
    if failed:
        raise SystemExit(1)


@cli.group()
def db() -> None:
    """Database schema commands."""


@db.command("migrate")
@click.pass_obj
def db_migrate(app: App) -> None:
    """Apply pending schema migrations (safe to run from several replicas at once)."""
    applied = migrate(app.engine(create=True))
    if applied:
        for m in applied:
            click.echo(f"applied {m.version:03d}_{m.name}")
    else:
        click.echo("schema up to date")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
@click.pass_obj
def status(app: App, as_json: bool) -> None:
    """Rows per outbox table and status, the oldest queued ages and the dead count; paused providers.

    Oldest queued: how long the oldest due row has waited for its turn. Oldest waiting: the age of the oldest
    queued row that is not due yet (an order the balance does not cover, one whose recipient is busy, a
    retry), since it was created."""
    engine = app.engine()
    now = utcnow()
    report = {}
    for table in OUTBOX_TABLES:
        stats = table_stats(engine, table, now)
        report[table.name] = {
            "counts": {s: stats.counts.get(s, 0) for s in STATUSES_BY_TABLE[table.name]},
            "oldest_queued_age_seconds": round(stats.oldest_queued_age_seconds, 1),
            "oldest_waiting_age_seconds": round(stats.oldest_waiting_age_seconds, 1),
            "dead": stats.counts.get(DEAD, 0),
        }
    providers = provider_reports(engine)
    for provider in configured_providers(app.config):
        try:
            details = dict(provider.status(app.config, engine, now))
        except Exception as exc:  # one provider's report failing must not hide the rest
            details = {"status_unavailable": f"{type(exc).__name__}: {mask_passwords(str(exc))}"}
        if details:
            providers[provider.name] = {**providers.get(provider.name, _open()), **details}
    if as_json:
        click.echo(json.dumps({**report, "providers": providers}, indent=2))
        return
    for name, entry in report.items():
        click.echo(f"{name}  (oldest queued {entry['oldest_queued_age_seconds']:.0f}s, oldest waiting "
                   f"{entry['oldest_waiting_age_seconds']:.0f}s, dead {entry['dead']})")
        for state, count in entry["counts"].items():
            click.echo(f"  {state:<10} {count:>10}")
    for name, entry in providers.items():
        flow = f"PAUSED ({entry['paused_reason']}) until {entry['paused_until']}" if entry["paused"] else "open"
        balance = f", balance {entry['balance']} at {entry['balance_checked_at']}" if entry["balance"] else ""
        more = "".join(f", {key} {value}" for key, value in entry.items() if key not in _open())
        click.echo(f"{name}: {flow}{balance}{more}")


def _open() -> dict:
    """A provider's report when it is neither paused nor has a balance reading."""
    return {"paused": False, "paused_reason": None, "paused_until": None, "balance": None, "balance_checked_at": None}


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
@click.argument("provider", type=click.Choice([provider.name for provider in PROVIDERS]))
@click.pass_obj
def resume(app: App, provider: str) -> None:
    """End a provider's pause now, whatever paused it (recorded with who did it)."""
    [chosen] = [p for p in PROVIDERS if p.name == provider]
    ended = chosen.resume(app.engine(), actor(), utcnow())
    if ended is None:
        click.echo(f"{provider} was not paused")
    else:
        click.echo(f"{provider} resumed (it was paused: {ended.reason}, until {ended.paused_until.isoformat()})")


@cli.command()
@click.pass_obj
def run(app: App) -> None:
    """Run the daemon until SIGTERM or SIGINT."""
    config = app.config
    configure_logging(config.daemon.log_level, config.daemon.log_format)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    engine = app.engine(create=True)
    log = logging.getLogger("reconciler")
    daemons: list[Daemon] = []  # none while the database is awaited: the process itself is alive then
    admin_http = listen("admin", config.admin.host, config.admin.port,
                        lambda: admin(config, engine, alive=lambda: all(d.is_alive() for d in daemons)))
    log.info("admin listener on %s:%d", config.admin.host, admin_http.port)
    try:
        if not wait_for_schema(engine, stop):
            return
        assembly = assemble(config, engine, stop=stop)
        daemons.append(assembly.daemon())
        public = listen("receiver", config.receiver.host, config.receiver.port, assembly.public_listener)
        log.info("public listener on %s:%d", config.receiver.host, public.port)
        try:
            daemons[0].run()
        finally:
            public.stop()
    finally:
        admin_http.stop()


def listen(section: str, host: str, port: int, make: Callable[[], HttpListener]) -> HttpListener:
    """Start a listener, or stop with one line naming the setting to change: the port is taken (exit 1), or the
    host is no address of this machine (exit 2)."""
    try:
        return make().start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise click.ClickException(f"{section}.port: {host}:{port} is in use by another process (Address already "
                                       f"in use): stop it or choose another {section}.port") from None
        raise ConfigProblem(f"{section}.host: cannot listen on {host!r} ({exc.strerror or exc}): give an address of "
                            f"this machine, e.g. 127.0.0.1 or 0.0.0.0") from None
    except ValueError:  # waitress: a host name that does not resolve
        raise ConfigProblem(f"{section}.host: cannot listen on {host!r} (not an address or a name that resolves): "
                            f"give an address of this machine, e.g. 127.0.0.1 or 0.0.0.0") from None


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


