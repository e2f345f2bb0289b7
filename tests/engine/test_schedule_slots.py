"""schedule_runs: replicas racing for one slot get it once; a finished slot stays finished; a dead claimer's
or a failed run's slot is taken over once."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from reconciler.engine.schedule_slots import claim_slot, fail_slot, finish_slot, load_slot

from tests.racing import race

SLOT = datetime(2026, 5, 10, 1, 0, tzinfo=timezone.utc)
LEASE = 300.0


def test_replicas_reaching_a_slot_together_claim_it_once(replicas):
    for day in range(8):  # several slots, so a lost race shows up
        slot = SLOT + timedelta(days=day)
        winners = race(replicas, lambda e, w: claim_slot(e, "reminders", slot, w, LEASE, slot))
        assert len(winners) == 1, f"slot {slot} claimed by {winners}"
        assert load_slot(replicas[0][0], "reminders", slot).attempts == 1


def test_one_job_slot_does_not_block_another_jobs_same_slot(engine):
    assert claim_slot(engine, "reminders", SLOT, "a", LEASE, SLOT)
    assert claim_slot(engine, "renewals", SLOT, "a", LEASE, SLOT)


def test_a_finished_slot_is_never_claimed_again(engine):
    assert claim_slot(engine, "reminders", SLOT, "a", LEASE, SLOT)
    assert finish_slot(engine, "reminders", SLOT, "a", SLOT + timedelta(seconds=5))
    for worker, seconds_later in [("a", 0), ("restarted", 0), ("restarted", 2 * LEASE), ("b", 86_000)]:
        assert not claim_slot(engine, "reminders", SLOT, worker, LEASE, SLOT + timedelta(seconds=seconds_later))
    run = load_slot(engine, "reminders", SLOT)
    assert (run.claimed_by, run.attempts, run.finished_at) == ("a", 1, SLOT + timedelta(seconds=5))


def test_a_dead_claimers_slot_is_taken_over_once_when_its_lease_is_over(engine, replicas):
    assert claim_slot(engine, "reminders", SLOT, "died", LEASE, SLOT)
    just_before = SLOT + timedelta(seconds=LEASE - 1)
    assert race(replicas, lambda e, w: claim_slot(e, "reminders", SLOT, w, LEASE, just_before)) == []
    at_expiry = SLOT + timedelta(seconds=LEASE)
    [winner] = race(replicas, lambda e, w: claim_slot(e, "reminders", SLOT, w, LEASE, at_expiry))
    run = load_slot(engine, "reminders", SLOT)
    assert (run.claimed_by, run.attempts, run.lease_until) == (winner, 2, at_expiry + timedelta(seconds=LEASE))
    assert not finish_slot(engine, "reminders", SLOT, "died", at_expiry)  # fenced: the slot is no longer its
    assert finish_slot(engine, "reminders", SLOT, winner, at_expiry)


def test_a_failed_run_frees_the_slot_for_a_retry_and_keeps_its_error(engine, replicas):
    assert claim_slot(engine, "reminders", SLOT, "a", LEASE, SLOT)
    assert fail_slot(engine, "reminders", SLOT, "a", "ConnectionError: partner down", SLOT, retry_after_seconds=60)
    assert not claim_slot(engine, "reminders", SLOT, "b", LEASE, SLOT + timedelta(seconds=59))
    retry_at = SLOT + timedelta(seconds=60)
    [winner] = race(replicas, lambda e, w: claim_slot(e, "reminders", SLOT, w, LEASE, retry_at))
    assert not fail_slot(engine, "reminders", SLOT, "a", "late", retry_at)  # fenced on the claimer
    assert finish_slot(engine, "reminders", SLOT, winner, retry_at)
    run = load_slot(engine, "reminders", SLOT)
    assert (run.attempts, run.last_error, run.finished_at) == (2, "ConnectionError: partner down", retry_at)


def test_a_failed_run_without_a_retry_delay_is_free_at_once(engine):
    assert claim_slot(engine, "reminders", SLOT, "a", LEASE, SLOT)
    assert fail_slot(engine, "reminders", SLOT, "a", "boom", SLOT)
    assert claim_slot(engine, "reminders", SLOT, "a", LEASE, SLOT)
