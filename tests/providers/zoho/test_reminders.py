"""EXPIRY_REMINDER: one per licence and expiry date, with the price paid, whoever runs the 02:00 slot and however
often; the slot runs once across replicas, through a worker dying mid-run and across daylight-saving changes."""
from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

import jobs.expiry_reminders as expiry_reminders
from jobs import licence_metrics as licence_metrics_job
from jobs import renewal_check
from jobs.expiry_reminders import RemindersFailed, send_reminders
from reconciler.engine.daemon import JobRunner
from reconciler.engine.job import JobContext
from reconciler.engine.schedule_slots import claim_slot, load_slot
from reconciler.engine.schema import licence_reminders, schedule_runs, subscriptions
from reconciler.providers.zoho import licence_metrics
from reconciler.providers.zoho.licences import EXPIRED, add_months, expire_past

from tests.conftest import FakeClock
from tests.providers.zoho.licensing import add_order, fulfil, partner_config, partner_events
from tests.racing import together

LAGOS_SLOT = datetime(2026, 5, 10, 1, 0, tzinfo=UTC)  # 02:00 in Lagos (UTC+1 all year)


def licence_expiring(engine, expires_at: datetime, customer: str, tenure: str = "1_MONTH"):
    """A licence bought `tenure` before `expires_at`."""
    months = {"1_MONTH": 1, "3_MONTHS": 3, "12_MONTHS": 12}[tenure]
    start = add_months(expires_at, -months)
    licence = fulfil(engine, add_order(engine, customer=customer, tenure=tenure), start)
    assert licence.expiry_date == expires_at
    return licence


def sent(engine) -> list[tuple[str, str]]:
    return [(e["activationReference"], e["expiryDate"]) for e in partner_events(engine, "EXPIRY_REMINDER")]


def test_licences_expiring_within_the_reminder_days_hear_once_with_the_price_paid(engine):
    config, clock = partner_config(), FakeClock(LAGOS_SLOT)
    last_day = licence_expiring(engine, datetime(2026, 5, 17, 22, 59, tzinfo=UTC), "A")  # 23:59 Lagos, 17 May
    today = licence_expiring(engine, datetime(2026, 5, 10, 20, 0, tzinfo=UTC), "B", tenure="12_MONTHS")
    licence_expiring(engine, datetime(2026, 5, 17, 23, 0, tzinfo=UTC), "C")  # 00:00 Lagos, 18 May: 8 days
    licence_expiring(engine, datetime(2026, 5, 10, 0, 59, tzinfo=UTC), "D")  # expired a minute before the run

    run = send_reminders(engine, config, LAGOS_SLOT, clock)

    assert (run.due, run.sent, run.already) == (2, 2, 0)
    events = {e["activationReference"]: e for e in partner_events(engine, "EXPIRY_REMINDER")}
    assert events == {
        today.activation_reference: {
            "orderId": events[today.activation_reference]["orderId"], "activationReference": today.activation_reference,
            "expiryDate": "2026-05-10T20:00:00+00:00", "daysUntilExpiry": 0, "customerEmail": "b@example.ng",
            "amount": 150000.0, "currency": "NGN"},
        last_day.activation_reference: {
            "orderId": events[last_day.activation_reference]["orderId"],
            "activationReference": last_day.activation_reference, "expiryDate": "2026-05-17T22:59:00+00:00",
            "daysUntilExpiry": 7, "customerEmail": "a@example.ng", "amount": 15000.0, "currency": "NGN"}}
    assert send_reminders(engine, config, LAGOS_SLOT, clock).due == 0  # run again: nothing owed
    assert send_reminders(engine, config, LAGOS_SLOT + timedelta(days=1), clock).sent == 1  # C enters the window
    assert len(sent(engine)) == 3


def test_a_renewed_licence_names_its_renewal_order_and_is_reminded_again_for_its_new_expiry(engine):
    config = partner_config()
    first = licence_expiring(engine, datetime(2026, 5, 15, 9, tzinfo=UTC), "A")
    send_reminders(engine, config, LAGOS_SLOT, FakeClock(LAGOS_SLOT))
    renewal = add_order(engine, customer="A", tenure="3_MONTHS")
    renewed = fulfil(engine, renewal, LAGOS_SLOT + timedelta(hours=5))
    assert renewed.expiry_date == datetime(2026, 8, 15, 9, tzinfo=UTC)
    for day in range(8):  # the week the old expiry was in the window: nothing more
        slot = LAGOS_SLOT + timedelta(days=day)
        assert send_reminders(engine, config, slot, FakeClock(slot)).due == 0
    before_new_expiry = datetime(2026, 8, 8, 1, tzinfo=UTC)
    assert send_reminders(engine, config, before_new_expiry, FakeClock(before_new_expiry)).sent == 1
    old, new = partner_events(engine, "EXPIRY_REMINDER")
    assert old["expiryDate"] == first.expiry_date.isoformat() and old["amount"] == 15000.0
    assert (new["orderId"], new["expiryDate"], new["daysUntilExpiry"], new["amount"]) == (
        renewal["order_id"], renewed.expiry_date.isoformat(), 7, 42000.0)


def test_reminder_days_and_the_partner_time_zone_set_the_window(engine):
    licence_expiring(engine, datetime(2026, 5, 13, 9, tzinfo=UTC), "A")  # 3 days after the slot's day
    licence_expiring(engine, datetime(2026, 5, 14, 9, tzinfo=UTC), "B")
    assert send_reminders(engine, partner_config(reminder_days=3), LAGOS_SLOT, FakeClock(LAGOS_SLOT)).sent == 1
    # 01:00 UTC on 10 May is still 9 May in New York (UTC-4): its window ends with 12 May there.
    ny_config = partner_config(timezone="America/New_York", reminder_days=3)
    assert send_reminders(engine, ny_config, LAGOS_SLOT, FakeClock(LAGOS_SLOT)).due == 0


def test_a_product_the_catalogue_no_longer_sells_is_reminded_without_an_amount(engine):
    licence = fulfil(engine, add_order(engine, product="RETIRED_PRODUCT"), datetime(2026, 4, 12, 9, tzinfo=UTC))
    send_reminders(engine, partner_config(), LAGOS_SLOT, FakeClock(LAGOS_SLOT))
    [event] = partner_events(engine, "EXPIRY_REMINDER")
    assert (event["activationReference"], event["amount"], event["currency"]) == (
        licence.activation_reference, None, None)


def test_one_reminder_that_cannot_be_recorded_holds_up_no_other_and_the_retry_sends_it(engine, monkeypatch):
    config, clock = partner_config(), FakeClock(LAGOS_SLOT)
    refs = [licence_expiring(engine, datetime(2026, 5, 12 + i, 9, tzinfo=UTC), f"C{i}").activation_reference
            for i in range(3)]
    real = expiry_reminders.record_reminder

    def refusing_the_second(engine, reminder, *args):
        if reminder.activation_reference == refs[1]:
            raise ValueError("event refused")
        return real(engine, reminder, *args)

    monkeypatch.setattr(expiry_reminders, "record_reminder", refusing_the_second)
    with pytest.raises(RemindersFailed, match=f"1 of 3 .*{refs[1]}"):
        send_reminders(engine, config, LAGOS_SLOT, clock)
    assert [ref for ref, _ in sent(engine)] == [refs[0], refs[2]]
    monkeypatch.undo()
    assert send_reminders(engine, config, LAGOS_SLOT, clock).sent == 1
    assert sorted(ref for ref, _ in sent(engine)) == sorted(refs)


def test_the_unreminded_gauge_counts_what_the_next_run_owes(engine):
    config = partner_config()
    for i in range(3):
        licence_expiring(engine, datetime(2026, 5, 11 + i, 9, tzinfo=UTC), f"C{i}")
    licence_expiring(engine, datetime(2026, 6, 30, 9, tzinfo=UTC), "LATER")
    licence_metrics.refresh(engine, config, LAGOS_SLOT)
    assert licence_metrics.LICENCES_EXPIRING_UNREMINDED._value.get() == 3
    assert licence_metrics.SUBSCRIPTIONS.labels("active")._value.get() == 4
    before = licence_metrics.EXPIRY_REMINDERS._value.get()
    send_reminders(engine, config, LAGOS_SLOT, FakeClock(LAGOS_SLOT))
    assert licence_metrics.LICENCES_EXPIRING_UNREMINDED._value.get() == 0
    assert licence_metrics.EXPIRY_REMINDERS._value.get() == before + 3


def test_runs_of_one_day_at_the_same_moment_send_each_reminder_once(engine, replicas):
    """A run past its lease while the replica that took the slot over runs too, or a person catching up meanwhile."""
    config, clock = partner_config(), FakeClock(LAGOS_SLOT)
    refs = {licence_expiring(engine, LAGOS_SLOT + timedelta(days=1, hours=i), f"C{i}").activation_reference
            for i in range(20)}
    runs = together(*(lambda e=e: send_reminders(e, config, LAGOS_SLOT, clock) for e, _ in replicas))
    assert sum(run.sent for run in runs) == 20
    assert Counter(ref for ref, _ in sent(engine)) == Counter({ref: 1 for ref in refs})


def test_the_licence_metrics_job_refreshes_the_gauges_on_its_interval(engine):
    config = partner_config()
    licence_expiring(engine, datetime(2026, 5, 11, 9, tzinfo=UTC), "A")
    licence_expiring(engine, datetime(2026, 4, 11, 9, tzinfo=UTC), "B")
    expire_past(engine, LAGOS_SLOT)
    job = licence_metrics_job.job(config)
    assert job.interval_seconds == config.daemon.metrics_interval_seconds
    ctx = JobContext(config=config, engine=engine, worker_id="w", outboxes={}, stop=threading.Event(),
                     clock=FakeClock(LAGOS_SLOT))
    runner = JobRunner(job, ctx)
    runner.trigger()
    runner.join(30)
    assert licence_metrics.SUBSCRIPTIONS.labels("expired")._value.get() == 1
    assert licence_metrics.SUBSCRIPTIONS.labels("active")._value.get() == 1
    assert licence_metrics.SUBSCRIPTIONS.labels("revoked")._value.get() == 0
    assert licence_metrics.LICENCES_EXPIRING_UNREMINDED._value.get() == 1


class Worker:
    """One replica of the daemon: its own engine and worker id, running the two licence jobs as the daemon
    does (JobRunner, one thread per run) on a shared fake clock."""

    def __init__(self, engine, name: str, config, clock: FakeClock) -> None:
        ctx = JobContext(config=config, engine=engine, worker_id=name, outboxes={}, stop=threading.Event(),
                         clock=clock)
        self.runners = [JobRunner(expiry_reminders.job(config), ctx), JobRunner(renewal_check.job(config), ctx)]


def tick(workers: list[Worker]) -> None:
    """One tick of every replica's main loop, its runs awaited so the test sees what they did."""
    runners = [runner for worker in workers for runner in worker.runners]
    for runner in runners:
        runner.trigger()
    for runner in runners:
        runner.join(30)
        assert not runner.running


def slots(engine, job: str) -> list[tuple[str, int, str]]:
    with engine.connect() as conn:
        rows = conn.execute(select(schedule_runs).where(schedule_runs.c.job == job)
                            .order_by(schedule_runs.c.slot_at)).mappings().all()
    assert all(row["finished_at"] is not None for row in rows)
    return [(f"{row['slot_at']:%m-%d %H:%M}", row["attempts"]) for row in rows]


def test_a_week_on_three_replicas_runs_each_slot_once_and_reminds_each_licence_once(engine, replicas):
    config = partner_config()
    clock = FakeClock(datetime(2026, 5, 9, 23, tzinfo=UTC))  # 9 May's slots are too late to run by then
    expiring = {day: licence_expiring(engine, datetime(2026, 5, day, 9, tzinfo=UTC), f"C{day}")
                for day in range(12, 26)}  # 10:00 Lagos on 12 to 25 May
    workers = [Worker(e, name, config, clock) for e, name in replicas[:3]]
    renewed = None
    while clock.now < datetime(2026, 5, 16, 12, tzinfo=UTC):
        tick(workers)
        clock.advance(15 * 60)
        if renewed is None and clock.now >= datetime(2026, 5, 12, 12, tzinfo=UTC):  # mid-week, C14 renews
            renewed = fulfil(engine, add_order(engine, customer="C14"), clock.now)

    days = [f"05-{d:02d}" for d in range(10, 17)]
    assert slots(engine, "expiry_reminders") == [(f"{d} 01:00", 1) for d in days]  # 02:00 Lagos, once each
    assert slots(engine, "renewal_check") == [(f"{d} 02:00", 1) for d in days]  # 03:00 Lagos
    reminders = partner_events(engine, "EXPIRY_REMINDER")
    assert Counter(e["activationReference"] for e in reminders) == Counter(
        {expiring[day].activation_reference: 1 for day in range(12, 24)})  # 23 May enters the 16 May window
    assert {e["activationReference"]: e["daysUntilExpiry"] for e in reminders} == {
        expiring[day].activation_reference: max(day - 10, 0) if day <= 17 else 7 for day in range(12, 24)}
    assert renewed.renewed and renewed.expiry_date == datetime(2026, 6, 14, 9, tzinfo=UTC)
    assert partner_events(engine, "SUBSCRIPTION_RENEWED") == []  # the 03:00 check sends none
    with engine.connect() as conn:
        statuses = dict(conn.execute(select(subscriptions.c.id, subscriptions.c.status)).all())
    assert {day for day, licence in expiring.items() if statuses[licence.subscription_id] == EXPIRED} == {12, 13, 15}


def test_a_worker_killed_mid_run_leaves_the_rest_to_the_replica_that_takes_the_slot_over(engine, replicas,
                                                                                          monkeypatch):
    config = partner_config()
    refs = {licence_expiring(engine, datetime(2026, 5, 11 + i, 9, tzinfo=UTC), f"C{i}").activation_reference
            for i in range(5)}
    job = expiry_reminders.job(config)
    slot = job.daily_at.slot_on(date(2026, 5, 10))
    clock = FakeClock(slot)

    class Killed(BaseException):
        """The process dies: nothing of the job's own handling runs."""

    real, calls = expiry_reminders.record_reminder, []

    def dying_on_the_third(*args):
        calls.append(args)
        if len(calls) == 3:
            raise Killed
        return real(*args)

    assert claim_slot(engine, job.name, slot, "killed", config.daemon.lease_seconds, clock())
    monkeypatch.setattr(expiry_reminders, "record_reminder", dying_on_the_third)
    with pytest.raises(Killed):
        send_reminders(engine, config, slot, clock)
    monkeypatch.undo()
    assert len(sent(engine)) == 2

    workers = [Worker(e, name, config, clock) for e, name in replicas[:3]]
    clock.advance(config.daemon.lease_seconds - 1)
    tick(workers)  # the dead worker's lease still runs: nobody touches the slot
    assert (load_slot(engine, job.name, slot).claimed_by, len(sent(engine))) == ("killed", 2)
    clock.advance(1)
    tick(workers)
    taken = load_slot(engine, job.name, slot)
    assert taken.claimed_by != "killed" and taken.attempts == 2 and taken.finished_at is not None
    assert sorted(ref for ref, _ in sent(engine)) == sorted(refs)
    tick(workers)
    assert len(sent(engine)) == 5
    with engine.connect() as conn:
        assert len(conn.execute(select(licence_reminders)).all()) == 5


@pytest.mark.parametrize("zone, reminder_slots, check_slots", [
    # 02:00 does not exist on 28 March in Berlin (02:00 -> 03:00): read with the winter offset, it runs at 03:00
    # summer time, the same moment as that day's 03:00 check. On 31 October 02:00 exists twice: it runs once,
    # at the first (summer time, 00:00 UTC).
    ("Europe/Berlin", ["03-27 01:00", "03-28 01:00", "03-29 00:00", "10-30 00:00", "10-31 00:00", "11-01 01:00"],
     ["03-27 02:00", "03-28 01:00", "03-29 01:00", "10-30 01:00", "10-31 02:00", "11-01 02:00"]),
    # London changes at 01:00: 02:00 and 03:00 exist once every day; the days are 23 and 25 hours long.
    ("Europe/London", ["03-27 02:00", "03-28 01:00", "03-29 01:00", "10-30 01:00", "10-31 02:00", "11-01 02:00"],
     ["03-27 03:00", "03-28 02:00", "03-29 02:00", "10-30 02:00", "10-31 03:00", "11-01 03:00"]),
    ("Africa/Lagos", ["03-27 01:00", "03-28 01:00", "03-29 01:00", "10-30 01:00", "10-31 01:00", "11-01 01:00"],
     ["03-27 02:00", "03-28 02:00", "03-29 02:00", "10-30 02:00", "10-31 02:00", "11-01 02:00"]),
])
def test_daylight_saving_changes_keep_one_slot_a_day_and_one_reminder_a_licence(engine, replicas, zone,
                                                                                 reminder_slots, check_slots):
    config = partner_config(timezone=zone, reminder_days=2)
    clock = FakeClock()
    workers = [Worker(e, name, config, clock) for e, name in replicas[:2]]
    # From 23:30 UTC the day before: that day's slots are too late to run (12 h and 20 h of lateness).
    for start, end in ((datetime(2027, 3, 26, 23, 30, tzinfo=UTC), datetime(2027, 3, 29, 12, tzinfo=UTC)),
                       (datetime(2027, 10, 29, 23, 30, tzinfo=UTC), datetime(2027, 11, 1, 12, tzinfo=UTC))):
        refs = [licence_expiring(engine, start + timedelta(days=1 + i), f"{start:%m}-{i}", "12_MONTHS")
                .activation_reference for i in range(3)]
        clock.now = start
        while clock.now < end:
            tick(workers)
            clock.advance(10 * 60)
        assert Counter(ref for ref, _ in sent(engine) if ref in refs) == Counter({ref: 1 for ref in refs})
    assert slots(engine, "expiry_reminders") == [(s, 1) for s in reminder_slots]
    assert slots(engine, "renewal_check") == [(s, 1) for s in check_slots]
