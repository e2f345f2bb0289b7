"""One OAuth access token per provider, shared by every replica through its provider_state row.

Providers such as Zoho allow a few token requests per refresh token and keep only the newest tokens valid,
so N replicas must make one refresh call, not N. One replica at a time takes the refresh under a lease on
the row (one conditional UPDATE), calls the provider with no transaction open, and stores the token fenced
on still holding that lease; the others keep using a still-valid token, or wait for the new one.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import Engine, or_, select, update

from reconciler.coordination.provider_state import ensure_provider_row
from reconciler.engine.clock import Clock, utcnow
from reconciler.engine.schema import provider_state

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05  # how often a replica waiting for another's refresh reads the row again


@dataclass(frozen=True)
class IssuedToken:
    """What a provider's token endpoint answered; the token itself stays out of repr (and so out of logs)."""
    access_token: str = field(repr=False)
    expires_in_seconds: float


class TokenUnavailable(Exception):
    """No valid token appeared within the wait: another replica holds the refresh and has not finished."""


@dataclass(frozen=True)
class _Row:
    access_token: str | None = None
    expires_at: datetime | None = None
    refresh_by: str | None = None
    refresh_until: datetime | None = None
    refresh_at: datetime | None = None

    def valid_at(self, moment: datetime) -> bool:
        return self.access_token is not None and self.expires_at is not None and self.expires_at > moment

    def fresh_at(self, now: datetime) -> bool:
        """Valid and not yet due for its refresh."""
        return self.valid_at(now) and self.refresh_at is not None and self.refresh_at > now

    def leased_at(self, now: datetime) -> bool:
        return self.refresh_until is not None and self.refresh_until > now


_COLUMNS = (provider_state.c.access_token, provider_state.c.token_expires_at,
            provider_state.c.token_refresh_by, provider_state.c.token_refresh_until, provider_state.c.token_refresh_at)


def refresh_due(issued_at: datetime, lifetime: timedelta, ahead: timedelta) -> datetime:
    """When a token issued at `issued_at` is refreshed: `ahead` before it expires, but never before half its
    life (a token shorter than `ahead` would otherwise be refreshed on every use)."""
    return issued_at + max(lifetime - ahead, lifetime / 2)


class TokenSlot:
    """The access token of `key` (a provider), refreshed by one replica at a time. `refresh()` makes the HTTP
    call and raises on failure; its error reaches the caller of token(), who decides (pause, retry)."""

    def __init__(self, engine: Engine, key: str, worker_id: str, refresh: Callable[[], IssuedToken], *,
                 refresh_ahead_seconds: float = 300.0, lease_seconds: float = 30.0,
                 wait_seconds: float = 30.0, clock: Clock = utcnow) -> None:
        self.engine = engine
        self.key = key
        self.worker_id = worker_id
        self.refresh = refresh
        self.refresh_ahead = timedelta(seconds=refresh_ahead_seconds)
        self.lease = timedelta(seconds=lease_seconds)
        self.wait_seconds = wait_seconds
        self.clock = clock
        # Set (and replaced) whenever this slot stores a token, so its other threads stop waiting at once.
        self._stored = threading.Event()

    def token(self) -> str:
        """A token not yet due for its refresh (see refresh_due), or, while another replica refreshes it early,
        the still-valid current one. The wait for another's refresh is bounded in real time (wait_seconds),
        not on the injected clock, which judges only token and lease expiry."""
        deadline = time.monotonic() + self.wait_seconds
        while True:
            stored = self._stored
            now = self.clock()
            row = self._read()
            if row.fresh_at(now):
                return row.access_token
            if not row.leased_at(now):
                until = now + self.lease
                if self._take_refresh(now, until):
                    token = self._refresh_holding(until)
                    if token is not None:
                        return token
                continue  # someone else took the refresh, or took over ours: read what they did
            if row.valid_at(now):
                return row.access_token
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TokenUnavailable(f"{self.key}: no valid access token after {self.wait_seconds:g}s; "
                                       f"{row.refresh_by} holds the refresh until {row.refresh_until}")
            stored.wait(min(POLL_SECONDS, remaining))

    def expires_at(self) -> datetime | None:
        """When the stored token expires (None: no token stored); the token itself is not read."""
        with self.engine.connect() as conn:
            return conn.execute(select(provider_state.c.token_expires_at)
                                .where(provider_state.c.provider == self.key)).scalar()

    def invalidate(self, token: str) -> None:
        """The provider refused `token`: forget it, but only if it is still the stored one, so many replicas
        reporting one dead token cause one refresh and a late report never throws away a newer token."""
        with self.engine.begin() as conn:
            forgotten = conn.execute(
                update(provider_state).where(provider_state.c.provider == self.key,
                                             provider_state.c.access_token == token)
                .values(access_token=None, token_expires_at=None, token_refresh_at=None,
                        updated_at=self.clock())).rowcount
        if forgotten:
            log.info("%s: access token refused by the provider, %s forgot it", self.key, self.worker_id)

    def _read(self) -> _Row:
        with self.engine.connect() as conn:
            row = conn.execute(select(*_COLUMNS).where(provider_state.c.provider == self.key)).first()
        return _Row(*row) if row is not None else _Row()

    def _take_refresh(self, now: datetime, until: datetime) -> bool:
        """One conditional UPDATE: the lease goes to one replica, and only while the token still needs
        refreshing (another may have stored a fresh one since we read the row)."""
        p = provider_state
        with self.engine.begin() as conn:
            ensure_provider_row(conn, self.key, now)
            return bool(conn.execute(
                update(p).where(p.c.provider == self.key,
                                or_(p.c.token_refresh_until.is_(None), p.c.token_refresh_until <= now),
                                or_(p.c.access_token.is_(None), p.c.token_expires_at.is_(None),
                                    p.c.token_refresh_at.is_(None), p.c.token_refresh_at <= now))
                .values(token_refresh_by=self.worker_id, token_refresh_until=until, updated_at=now)
            ).rowcount)

    def _refresh_holding(self, until: datetime) -> str | None:
        """Call the provider (no transaction open) and store its token; None if another replica took the
        refresh over meanwhile (our lease ran out), whose token then wins."""
        started = self.clock()  # the token's lifetime counts from before the call: never trust it too long
        try:
            issued = self.refresh()
        except BaseException:
            self._release(until, {})
            raise
        lifetime = timedelta(seconds=issued.expires_in_seconds)
        expires_at = started + lifetime
        if not self._release(until, {"access_token": issued.access_token, "token_expires_at": expires_at,
                                     "token_refresh_at": refresh_due(started, lifetime, self.refresh_ahead)}):
            log.warning("%s: %s refreshed the access token after its lease was taken over; kept the other",
                        self.key, self.worker_id)
            return None
        log.info("%s: access token refreshed by %s, valid until %s", self.key, self.worker_id, expires_at)
        self._stored, stored = threading.Event(), self._stored
        stored.set()
        return issued.access_token

    def _release(self, until: datetime, values: dict[str, object]) -> bool:
        """Free our lease (and store `values`), fenced on still holding it: same holder, same lease."""
        p = provider_state
        with self.engine.begin() as conn:
            return bool(conn.execute(
                update(p).where(p.c.provider == self.key, p.c.token_refresh_by == self.worker_id,
                                p.c.token_refresh_until == until)
                .values(**values, token_refresh_by=None, token_refresh_until=None, updated_at=self.clock())
            ).rowcount)
