"""Pauses shared by every replica: a paused key holds until its time, then exactly one replica probes it and
its answer (resume or a new pause) opens the key to the others; failures counted by all replicas together
open a pause at the threshold, and every further failure doubles it up to a cap."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from reconciler.coordination.pauses import PROBE_LEASE_SECONDS, Pause, Pauses
from reconciler.engine.schema import pauses as pauses_table

from tests.racing import race, together

MTN, HOOK = "mtn", "webhook:https://shop.example/hook"


def seconds(s: float) -> timedelta:
    return timedelta(seconds=s)


def test_a_paused_key_holds_until_its_time_then_exactly_one_racing_replica_probes_it(engine, replicas, clock):
    pauses = Pauses(engine)

    def probe(e, worker):
        return Pauses(e).take_probe(MTN, worker, clock())

    for round_ in range(4):  # several rounds, so a lost race shows up
        paused = pauses.pause(MTN, "unauthorised", clock() + seconds(300), clock(), "401 from the reseller")
        assert (paused.paused, paused.holds(clock()), paused.reason, paused.detail) == (
            True, True, "unauthorised", "401 from the reseller")
        clock.advance(299)
        assert race(replicas, probe) == []  # still holding: nobody tries the other side
        clock.advance(1)
        state = pauses.get(MTN)
        assert state.paused and not state.holds(clock())  # time is up, but only a probe opens it
        [prober] = race(replicas, probe)
        clock.advance(30)
        assert race(replicas, probe) == [prober], f"round {round_}"  # its own again; the rest still wait
        assert not pauses.resume(MTN, clock()).paused
        assert race(replicas, probe) == []  # open: nothing left to probe


def test_a_probe_held_by_a_replica_that_died_is_taken_over_once_its_lease_runs_out(engine, replicas, clock):
    pauses = Pauses(engine)

    def probe(e, worker):
        return Pauses(e).take_probe(MTN, worker, clock())

    pauses.pause(MTN, "unauthorised", clock(), clock())
    assert pauses.take_probe(MTN, "died-probing", clock())
    clock.advance(PROBE_LEASE_SECONDS - 1)
    assert race(replicas, probe) == []
    clock.advance(2)
    [winner] = race(replicas, probe)
    assert not pauses.take_probe(MTN, "died-probing", clock())  # back from the dead: the probe is no longer its
    assert race(replicas, probe) == [winner]


def test_no_probe_while_the_pause_holds_nor_for_a_key_never_paused(engine, clock):
    pauses = Pauses(engine)
    pauses.pause(MTN, "rate_limited", clock() + seconds(10), clock())
    assert not pauses.take_probe(MTN, "a", clock())
    assert not pauses.take_probe(MTN, "a", clock() + seconds(9.999))
    assert not pauses.take_probe(HOOK, "a", clock())
    assert pauses.get(HOOK) == Pause(HOOK)
    assert [p.key for p in pauses.all_paused()] == [MTN]  # asking about a key does not pause it


def test_a_new_pause_gives_up_the_probe_someone_held(engine, clock):
    pauses = Pauses(engine)
    pauses.pause(MTN, "unauthorised", clock(), clock())
    assert pauses.take_probe(MTN, "a", clock())
    assert not pauses.take_probe(MTN, "b", clock())
    pauses.pause(MTN, "unauthorised", clock() + seconds(10), clock(), "probe: still 401")  # a's probe's answer
    assert not pauses.take_probe(MTN, "a", clock())  # the new pause holds, even for the one that probed
    clock.advance(10)  # well inside a's old probe lease
    assert pauses.take_probe(MTN, "b", clock())
    assert not pauses.take_probe(MTN, "a", clock())


def test_failures_from_racing_replicas_are_all_counted_and_open_the_pause_at_the_threshold(engine, replicas, clock):
    each, threshold = 5, 28  # 30 failures in all

    def fail(e) -> list[Pause]:
        return [Pauses(e).record_failure(HOOK, clock(), threshold, 10.0, 3600.0, reason="endpoint_failing")
                for _ in range(each)]

    seen = [p for ps in together(*(lambda e=e: fail(e) for e, _ in replicas)) for p in ps]
    assert sorted(p.consecutive_failures for p in seen) == list(range(1, len(replicas) * each + 1))
    for p in seen:  # each failure saw its own count, and the pause that count calls for
        past = p.consecutive_failures - threshold
        assert p.paused_until == (clock() + seconds(10 * 2 ** past) if past >= 0 else None), p
    state = Pauses(engine).get(HOOK)
    assert (state.consecutive_failures, state.reason, state.paused_until) == (30, "endpoint_failing",
                                                                              clock() + seconds(40))


def test_each_failure_past_the_threshold_doubles_the_pause_up_to_the_cap(engine, clock):
    pauses = Pauses(engine)

    def fail() -> Pause:
        return pauses.record_failure(HOOK, clock(), threshold=3, base_pause_seconds=10.0, max_pause_seconds=35.0,
                                     reason="endpoint_failing")

    assert [fail().paused for _ in range(2)] == [False, False]
    for round_, expected in enumerate([10, 20, 35, 35]):
        failed = fail()  # the third failure, then each failed probe
        assert (failed.reason, failed.paused_until) == ("endpoint_failing", clock() + seconds(expected))
        assert not pauses.take_probe(HOOK, "replica-0", clock())
        clock.advance(expected)
        # the failure gave up the last probe, so another replica may take this one inside the old one's lease
        assert pauses.take_probe(HOOK, f"replica-{round_ % 2}", clock()), round_


def test_a_success_closes_the_pause_and_the_count_starts_again(engine, clock):
    pauses = Pauses(engine)

    def fail() -> Pause:
        return pauses.record_failure(HOOK, clock(), 3, 10.0, 3600.0)

    assert [fail().paused for _ in range(3)] == [False, False, True]
    clock.advance(10)
    assert pauses.take_probe(HOOK, "a", clock())
    assert not pauses.record_success(HOOK, clock()).paused
    assert pauses.get(HOOK) == Pause(HOOK)
    assert not pauses.take_probe(HOOK, "b", clock())
    assert [fail().paused for _ in range(2)] == [False, False]
    pauses.record_success(HOOK, clock())
    assert [fail().paused for _ in range(2)] == [False, False]  # consecutive failures: a success between resets
    assert pauses.get(HOOK).consecutive_failures == 2


def test_a_success_on_a_key_that_never_failed_writes_nothing(engine, clock):
    pauses = Pauses(engine)

    def rows() -> list[tuple]:
        with engine.connect() as conn:
            return conn.execute(select(pauses_table.c.key, pauses_table.c.updated_at)).all()

    pauses.record_success(HOOK, clock())  # every delivered webhook says so: it must stay cheap
    assert rows() == []
    pauses.record_failure(HOOK, clock(), 3, 10.0, 3600.0)
    clock.advance(1)
    pauses.record_success(HOOK, clock())
    assert rows() == [(HOOK, clock())]
    clock.advance(1)
    pauses.record_success(HOOK, clock())
    assert rows() == [(HOOK, clock() - seconds(1))]


def test_all_paused_and_count_holding_see_keys_by_prefix(engine, clock):
    pauses, now = Pauses(engine), clock()
    a, b, c, d = (f"webhook:https://{host}.example/hook" for host in "abcd")
    pauses.pause(MTN, "rate_limited", now + seconds(60), now)
    pauses.pause(a, "endpoint_failing", now + seconds(60), now)
    pauses.pause(b, "endpoint_failing", now, now)  # over: waiting for its probe
    pauses.record_failure(c, now, 3, 10.0, 3600.0)  # failing, below the threshold
    pauses.pause(d, "endpoint_failing", now + seconds(60), now)
    pauses.resume(d, now)

    def keys(found: list[Pause]) -> list[str]:
        return [p.key for p in found]

    assert keys(pauses.all_paused()) == [MTN, a, b]
    assert keys(pauses.all_paused("webhook:")) == [a, b]
    assert keys(pauses.all_paused(MTN)) == [MTN]
    assert (pauses.count_holding("webhook:", now), pauses.count_holding(MTN, now)) == (1, 1)
    assert pauses.count_holding("webhook:", now + seconds(60)) == 0
    found = pauses.get_many([a, c, "webhook:https://e.example/hook"])
    assert (found[a].holds(now), found[c].consecutive_failures, found["webhook:https://e.example/hook"].paused) == (
        True, 1, False)


def test_a_resume_for_one_reason_leaves_a_pause_set_for_another_standing(engine, clock):
    pauses = Pauses(engine)
    pauses.pause(MTN, "rate_limited", clock() + seconds(60), clock())  # set while a 401 probe was under way
    assert pauses.resume(MTN, clock(), reason="unauthorised").reason == "rate_limited"
    assert not pauses.resume(MTN, clock(), reason="rate_limited").paused


def test_while_a_pause_holds_exactly_one_racing_replica_takes_an_early_probe(engine, replicas, clock):
    Pauses(engine).pause(MTN, "unauthorised", clock() + seconds(300), clock())

    def early(e, worker):
        return Pauses(e).take_probe(MTN, worker, clock(), early=True)

    [prober] = race(replicas, early)
    assert race(replicas, early) == [prober]
    assert Pauses(engine).get(MTN).holds(clock())  # taking the probe does not end the pause
