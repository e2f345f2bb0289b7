"""`reconciler subscriptions list` and `reconciler reminders run --at WHEN`: the licences by hand."""
from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import click

from jobs.expiry_reminders import RemindersFailed, reminder_time, send_reminders
from reconciler.cli.support import App, Duration, OneLineErrors, UsageProblem, When
from reconciler.engine.clock import utcnow
from reconciler.providers.zoho.licences import SUBSCRIPTION_STATUSES, find_subscriptions

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class Day(OneLineErrors, When):
    """A calendar day: YYYY-MM-DD (a day in partner.timezone), or a WHEN (ISO time, or an age such as 1d), read
    as the day it falls on there."""

    name = "WHEN"

    def convert(self, value, param, ctx) -> date | datetime:
        if isinstance(value, (date, datetime)):
            return value
        if _DATE.fullmatch(value.strip()):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                self.fail(f"{value!r} is not a date (YYYY-MM-DD)", param, ctx)
        return super().convert(value, param, ctx)


@click.group()
def subscriptions() -> None:
    """Licences of the T2Mobile flow."""


@subscriptions.command("list")
@click.option("--expiring-within", "within", type=Duration(),
              help="Only licences expiring between now and then, e.g. 7d, 12h, 2w.")
@click.option("--status", type=click.Choice(SUBSCRIPTION_STATUSES), help="Only licences in this status.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1), help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
def list_subscriptions(app: App, within: timedelta | None, status: str | None, limit: int, as_json: bool) -> None:
    """Licences, soonest expiry first, with the latest order behind each and its reminder for the current
    expiry (if sent)."""
    now = utcnow()
    rows = find_subscriptions(app.engine(), status=status, limit=limit, after=now if within is not None else None,
                              expiring_before=now + within if within is not None else None)
    for row in rows:
        if as_json:
            click.echo(json.dumps({k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}))
            continue
        reminded = f"reminded {row['reminded_at']:%Y-%m-%d %H:%M}" if row["reminded_at"] else "not reminded"
        click.echo(f"{row['activation_reference']}  {row['status']:<7}  expires {row['expires_at']:%Y-%m-%d %H:%M} "
                   f"UTC  {row['customer_id']}  {row['product_id']} {row['tenure']}  order {row['order_id']}  "
                   f"{reminded}")
    if not rows and not as_json:
        click.echo("no licences match", err=True)


@click.group()
def reminders() -> None:
    """EXPIRY_REMINDER events."""


@reminders.command("run")
@click.option("--at", "day", required=True, type=Day(),
              help="The day whose 02:00 run to do: YYYY-MM-DD in partner.timezone, an ISO time, or an age (1d).")
@click.pass_obj
def run_reminders(app: App, day: date | datetime) -> None:
    """Send what the 02:00 reminder run of that day sends, for a person catching up: reminders already sent
    (by the daemon or by hand) are not sent again."""
    config = app.require("partner.webhook_url")
    schedule = reminder_time(config)
    if isinstance(day, datetime):
        day = day.astimezone(ZoneInfo(schedule.timezone)).date()
    slot_at = schedule.slot_on(day)
    if slot_at > utcnow():
        raise UsageProblem(f"--at: the {schedule} run of {day} is still ahead ({slot_at:%Y-%m-%d %H:%M} UTC); "
                           f"the daemon sends it then")
    try:
        run = send_reminders(app.engine(), config, slot_at, utcnow)
    except RemindersFailed as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"reminders of {day} ({schedule}): {run.due} due, {run.sent} sent, {run.already} sent meanwhile")


LICENCE_COMMANDS: tuple[click.Command, ...] = (subscriptions, reminders)  # for ZohoProvider.commands()
