"""Daily quotas shared through the database: never more than the limit in a UTC day, across replicas."""
from __future__ import annotations

from datetime import datetime, timezone

from reconciler.coordination.quotas import DailyQuota, Use, next_day

from tests.racing import together


def test_uses_up_to_the_limit_then_none_until_the_next_utc_day(engine, clock) -> None:
    clock.now = datetime(2026, 11, 30, 23, 59, 59, tzinfo=timezone.utc)
    quota = DailyQuota(engine, "zoho:1", 2, clock)
    assert [quota.take(), quota.take(), quota.take()] == [Use(True, 1), Use(True, 2), Use(False, 2)]
    assert quota.used(clock()) == 2
    assert next_day(clock()) == datetime(2026, 12, 1, tzinfo=timezone.utc)
    clock.advance(1)
    assert quota.used(clock()) == 0
    assert quota.take() == Use(True, 1)


def test_a_day_in_another_zone_is_counted_as_its_utc_day(engine, clock) -> None:
    quota = DailyQuota(engine, "zoho:1", 5, clock)
    clock.now = datetime(2026, 12, 1, 0, 30, tzinfo=timezone.utc)
    quota.take()
    lagos_evening = datetime.fromisoformat("2026-11-30T23:45:00-01:00")  # 00:45 UTC on the 1st
    assert quota.used(lagos_evening) == 1 and next_day(lagos_evening) == datetime(2026, 12, 2, tzinfo=timezone.utc)


def test_exhaust_spends_the_day_for_every_replica(engine, clock) -> None:
    DailyQuota(engine, "zoho:1", 100, clock).exhaust()
    assert DailyQuota(engine, "zoho:1", 100, clock).take() == Use(False, 100)
    assert DailyQuota(engine, "zoho:2", 100, clock).take().taken


def test_replicas_taking_at_once_never_pass_the_limit(replicas, clock) -> None:
    quotas = [DailyQuota(engine, "zoho:1", 7, clock) for engine, _ in replicas]
    taken = together(*(quota.take for quota in quotas for _ in range(2)))
    assert sum(use.taken for use in taken) == 7
    assert sorted(use.used for use in taken if use.taken) == list(range(1, 8))
