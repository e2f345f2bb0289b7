"""Idempotency-Key for the partner intake (IETF httpapi draft): a request's key is claimed before it is
handled and its answer is stored with the order in one transaction, so a retry gets the same answer again,
a different request under the same key is refused (422) and a request racing the first one is told to
wait (409), across every replica. Keys are scoped per API key (`client`: a hash prefix, never the key).

Only outcomes are stored (an order accepted, or an existing order shown). A request refused for its fields
frees its key, as Stripe does: the client corrects the body and retries under the same key.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, delete, select, update

from reconciler.engine.clock import Clock, utcnow
from reconciler.engine.db import insert_ignoring_conflicts
from reconciler.engine.schema import idempotency_keys

# A request that claimed a key and died (process killed, database gone mid-request) frees it after this long;
# until then a retry hears 409. Handling a request takes milliseconds; the listener cuts requests at 10 s.
CLAIM_SECONDS = 30.0


@dataclass(frozen=True)
class Answer:
    """An HTTP answer as stored for replay."""
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class Claimed:
    """This request holds the key: handle it, then `store` its answer or `release` the key."""
    token: str


@dataclass(frozen=True)
class Replay:
    answer: Answer


class InProgress:
    """Another request under this key is being handled now."""


class Mismatch:
    """The key was used for a different request."""


IN_PROGRESS, MISMATCH = InProgress(), Mismatch()
ClaimResult = Claimed | Replay | InProgress | Mismatch


class IdempotencyKeys:
    def __init__(self, engine: Engine, ttl_hours: float, clock: Clock = utcnow,
                 claim_seconds: float = CLAIM_SECONDS) -> None:
        self.engine = engine
        self.ttl = timedelta(hours=ttl_hours)
        self.claim_for = timedelta(seconds=claim_seconds)
        self.clock = clock

    def claim(self, client: str, key: str, fingerprint: str) -> ClaimResult:
        """One short transaction: take the key (new, expired, or abandoned by a request that died) or say why
        not. PostgreSQL: a racing INSERT waits for the first claim's commit, then sees it; SQLite: one writer."""
        k = idempotency_keys
        token = uuid.uuid4().hex
        now = self.clock()
        claimed = {"fingerprint": fingerprint, "claimed_by": token, "locked_until": now + self.claim_for,
                   "order_id": None, "status_code": None, "response_headers": None, "response_body": None,
                   "created_at": now, "expires_at": now + self.ttl}
        with self.engine.begin() as conn:
            if conn.execute(insert_ignoring_conflicts(conn.dialect.name, k, ["client", "idempotency_key"])
                            .values(client=client, idempotency_key=key, **claimed)
                            .returning(k.c.client)).first() is not None:
                return Claimed(token)
            row = conn.execute(select(k).where(k.c.client == client, k.c.idempotency_key == key)
                               .with_for_update()).mappings().one()
            if row["expires_at"] > now:
                if row["fingerprint"] != fingerprint:
                    return MISMATCH
                if row["status_code"] is not None:
                    return Replay(_answer(row))
                if row["locked_until"] is not None and row["locked_until"] > now:
                    return IN_PROGRESS
            conn.execute(update(k).where(k.c.client == client, k.c.idempotency_key == key).values(**claimed))
        return Claimed(token)

    def store(self, conn: Connection, client: str, key: str, claim: Claimed, order_id: str, answer: Answer) -> bool:
        """Keep `answer` for replay, in the caller's transaction (the one that wrote the order). False when this
        request no longer holds the key (it outlived its claim and another took it): roll back then."""
        k = idempotency_keys
        return conn.execute(
            update(k).where(k.c.client == client, k.c.idempotency_key == key, k.c.claimed_by == claim.token)
            .values(claimed_by=None, locked_until=None, order_id=order_id, status_code=answer.status,
                    response_headers=json.dumps(answer.headers), response_body=answer.body.decode())
        ).rowcount == 1

    def release(self, client: str, key: str, claim: Claimed) -> None:
        """The request ended with nothing worth keeping (its fields were refused, or it failed): free the key."""
        k = idempotency_keys
        with self.engine.begin() as conn:
            conn.execute(delete(k).where(k.c.client == client, k.c.idempotency_key == key,
                                         k.c.claimed_by == claim.token))


def prune_expired(engine: Engine, now: datetime) -> int:
    """Delete the answers kept past their time; how many. Expired rows are ignored by `claim` anyway: this only
    keeps the table small."""
    with engine.begin() as conn:
        return conn.execute(delete(idempotency_keys).where(idempotency_keys.c.expires_at <= now)).rowcount


def _answer(row: dict) -> Answer:
    headers = tuple((name, value) for name, value in json.loads(row["response_headers"]))
    return Answer(row["status_code"], headers, row["response_body"].encode())
