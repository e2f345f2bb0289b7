"""The Idempotency-Key store on SQLite and PostgreSQL: claim, replay, mismatch, a claim that runs out is taken
over and its first holder can no longer store, expiry, pruning."""
from __future__ import annotations

from reconciler.providers.zoho.idempotency import (
    IN_PROGRESS, MISMATCH, Answer, Claimed, IdempotencyKeys, Replay, prune_expired,
)

ANSWER = Answer(202, (("Location", "/t2mobile/orders/T2M-1"),), b'{"orderId": "T2M-1"}')


def test_a_key_is_claimed_once_then_answered_then_replayed(engine, clock):
    keys = IdempotencyKeys(engine, ttl_hours=24, clock=clock)
    claim = keys.claim("client-a", "k-1", "fp-1")
    assert isinstance(claim, Claimed)
    assert keys.claim("client-a", "k-1", "fp-1") is IN_PROGRESS
    assert keys.claim("client-a", "k-1", "fp-2") is MISMATCH
    assert isinstance(keys.claim("client-b", "k-1", "fp-2"), Claimed)  # another API key's own key
    with engine.begin() as conn:
        assert keys.store(conn, "client-a", "k-1", claim, "T2M-1", ANSWER)
    assert keys.claim("client-a", "k-1", "fp-1") == Replay(ANSWER)
    assert keys.claim("client-a", "k-1", "fp-2") is MISMATCH


def test_a_claim_that_ran_out_is_taken_over_and_its_first_holder_cannot_store(engine, clock):
    keys = IdempotencyKeys(engine, ttl_hours=24, clock=clock, claim_seconds=30)
    first = keys.claim("client-a", "k-1", "fp-1")
    clock.advance(29)
    assert keys.claim("client-a", "k-1", "fp-1") is IN_PROGRESS
    clock.advance(1)
    second = keys.claim("client-a", "k-1", "fp-1")
    assert isinstance(second, Claimed) and second != first
    with engine.begin() as conn:
        assert not keys.store(conn, "client-a", "k-1", first, "T2M-1", ANSWER)
        assert keys.store(conn, "client-a", "k-1", second, "T2M-1", ANSWER)


def test_a_released_key_is_free_and_an_expired_answer_is_forgotten_and_pruned(engine, clock):
    keys = IdempotencyKeys(engine, ttl_hours=1, clock=clock)
    keys.release("client-a", "k-1", keys.claim("client-a", "k-1", "fp-1"))
    claim = keys.claim("client-a", "k-1", "fp-2")  # not a mismatch: the first request kept nothing
    with engine.begin() as conn:
        keys.store(conn, "client-a", "k-1", claim, "T2M-1", ANSWER)
    assert prune_expired(engine, clock()) == 0
    clock.advance(3600)
    assert isinstance(keys.claim("client-a", "k-1", "fp-3"), Claimed)  # expired: taken afresh, even unpruned
    clock.advance(3600)
    assert prune_expired(engine, clock()) == 1
