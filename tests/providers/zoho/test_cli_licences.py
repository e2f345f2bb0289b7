"""`reconciler subscriptions list` and `reconciler reminders run --at WHEN` against a real database: what a
person sees, catching up never sends twice, a bad value is one line and exit 2."""
from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import click
import pytest
from click.testing import CliRunner

from jobs.expiry_reminders import reminder_time, send_reminders
from reconciler.cli.support import App, Commands
from reconciler.providers.zoho.cli_licences import LICENCE_COMMANDS
from reconciler.providers.zoho.licences import add_months, expire_past

from tests.conftest import FakeClock
from tests.providers.zoho.licensing import PARTNER_URL, add_order, fulfil, partner_config, partner_events

LAGOS = ZoneInfo("Africa/Lagos")


@click.group(cls=Commands)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """The root group as reconciler.cli.root builds it, with the licence commands a provider brings."""
    ctx.obj = App(None)


for _command in LICENCE_COMMANDS:
    cli.add_command(_command)


def invoke(db_url: str, *args: str):
    return CliRunner().invoke(cli, list(args), env={"RECONCILER_CONFIG": None, "RECONCILER_DATABASE_URL": db_url,
                                                    "RECONCILER_PARTNER_WEBHOOK_URL": PARTNER_URL})


def one_line(result, exit_code: int) -> str:
    output = result.output.strip()
    assert result.exit_code == exit_code, result.output
    assert len(output.splitlines()) == 1 and "Traceback" not in output, output
    return output


def licence_expiring_in(engine, delta: timedelta, customer: str, tenure: str = "1_MONTH"):
    expires = (datetime.now(UTC) + delta).replace(microsecond=0)
    return fulfil(engine, add_order(engine, customer=customer, tenure=tenure), add_months(expires, -1))


def test_list_shows_licences_soonest_first_filtered_by_expiry_and_status(engine, db_url):
    soon = licence_expiring_in(engine, timedelta(days=3), "A")
    later = licence_expiring_in(engine, timedelta(days=20), "B")
    gone = licence_expiring_in(engine, timedelta(days=-2), "C")
    expire_past(engine, datetime.now(UTC))

    listing = invoke(db_url, "subscriptions", "list")
    assert listing.exit_code == 0, listing.output
    lines = listing.output.splitlines()
    assert [line.split()[0] for line in lines] == [gone.activation_reference, soon.activation_reference,
                                                   later.activation_reference]
    assert "expired" in lines[0] and "active" in lines[1] and "not reminded" in lines[1]
    assert "ZOHO_CRM_STD 1_MONTH  order T2M-ORD-" in lines[1]

    within = invoke(db_url, "subscriptions", "list", "--expiring-within", "7d")
    assert [line.split()[0] for line in within.output.splitlines()] == [soon.activation_reference]
    assert invoke(db_url, "subscriptions", "list", "--expiring-within", "1w", "--status", "expired").output == (
        "no licences match\n")
    as_json = [json.loads(line) for line in invoke(db_url, "subscriptions", "list", "--status", "active",
                                                   "--json").output.splitlines()]
    assert [(r["activation_reference"], r["status"], r["customer_email"]) for r in as_json] == [
        (soon.activation_reference, "active", "a@example.ng"), (later.activation_reference, "active", "b@example.ng")]
    assert datetime.fromisoformat(as_json[0]["expires_at"]) == soon.expiry_date


def test_list_shows_the_reminder_of_the_current_expiry(engine, db_url):
    licence_expiring_in(engine, timedelta(days=3), "A")
    now = datetime.now(UTC)
    send_reminders(engine, partner_config(), reminder_time(partner_config()).latest_slot(now), FakeClock(now))
    [line] = invoke(db_url, "subscriptions", "list").output.splitlines()
    assert "reminded 20" in line


def test_reminders_run_sends_what_that_days_run_sends_and_never_twice(engine, db_url):
    yesterday = datetime.now(LAGOS).date() - timedelta(days=1)
    due = [licence_expiring_in(engine, timedelta(days=d), f"C{d}").activation_reference for d in (1, 4)]
    licence_expiring_in(engine, timedelta(days=30), "LATER")

    first = invoke(db_url, "reminders", "run", "--at", yesterday.isoformat())
    assert one_line(first, 0) == (f"reminders of {yesterday} (02:00 Africa/Lagos): 2 due, 2 sent, 0 sent meanwhile")
    events = partner_events(engine, "EXPIRY_REMINDER")
    assert sorted(e["activationReference"] for e in events) == sorted(due)
    assert sorted(e["daysUntilExpiry"] for e in events)[0] in (2, 3)  # counted from yesterday, not today

    for again in (yesterday.isoformat(), "1d", f"{yesterday.isoformat()}T12:00:00+01:00"):
        assert "0 due, 0 sent" in one_line(invoke(db_url, "reminders", "run", "--at", again), 0)
    assert len(partner_events(engine, "EXPIRY_REMINDER")) == 2
    slot = reminder_time(partner_config()).slot_on(yesterday)
    send_reminders(engine, partner_config(), slot, FakeClock(datetime.now(UTC)))  # then the daemon's run
    assert len(partner_events(engine, "EXPIRY_REMINDER")) == 2


@pytest.mark.parametrize("args, phrase", [
    (["reminders", "run", "--at", "yesterday"], "--at: 'yesterday' is neither an ISO time nor an age"),
    (["reminders", "run", "--at", "2026-02-30"], "--at: '2026-02-30' is not a date (YYYY-MM-DD)"),
    (["reminders", "run", "--at", (date.today() + timedelta(days=3)).isoformat()], "is still ahead"),
    (["subscriptions", "list", "--expiring-within", "7 days"], "--expiring-within: '7 days' is not a duration"),
    (["subscriptions", "list", "--expiring-within", "-1d"], "--expiring-within: '-1d' is not a duration"),
])
def test_a_bad_when_or_duration_is_one_line_and_exit_2(engine, db_url, args, phrase):
    assert phrase in one_line(invoke(db_url, *args), 2)
    assert partner_events(engine, "EXPIRY_REMINDER") == []


def test_reminders_run_without_a_partner_webhook_url_is_a_config_error(db_url, engine):
    result = CliRunner().invoke(cli, ["reminders", "run", "--at", "1d"],
                                env={"RECONCILER_CONFIG": None, "RECONCILER_DATABASE_URL": db_url})
    assert one_line(result, 2) == "config error: partner.webhook_url is not set"
