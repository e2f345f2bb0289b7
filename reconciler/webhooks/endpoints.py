"""Per-endpoint delivery state shared by all replicas.

Circuit breaker: after `threshold` consecutive failures an endpoint is paused; when the pause ends
one delivery probes it; a failed probe pauses it again for twice as long (up to an hour), a success
closes the breaker. A 410 disables the endpoint until a person replays to it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable

from sqlalchemy import Engine, func, select, update
from reconciler.engine.db import insert_ignoring_conflicts
from reconciler.engine.schema import webhook_endpoints as endpoints

MAX_PAUSE_SECONDS = 3600.0


@dataclass(frozen=True)
class EndpointState:
    url: str
    consecutive_failures: int = 0
    paused_until: datetime | None = None
    disabled_at: datetime | None = None

    def paused(self, now: datetime) -> bool:
        return self.paused_until is not None and self.paused_until > now

    def breaker_open(self, threshold: int) -> bool:
        """Failing enough that the next attempt is a probe of the endpoint, not of the event."""
        return self.consecutive_failures >= threshold


def load_states(engine: Engine, urls: Iterable[str]) -> dict[str, EndpointState]:
    urls = set(urls)
    with engine.connect() as conn:
        rows = conn.execute(select(endpoints.c.url, endpoints.c.consecutive_failures, endpoints.c.paused_until,
                                   endpoints.c.disabled_at).where(endpoints.c.url.in_(urls))).all()
    states = {url: EndpointState(url) for url in urls}
    states.update({row.url: EndpointState(*row) for row in rows})
    return states


def record_result(engine: Engine, url: str, delivered: bool, now: datetime, threshold: int,
                  base_pause_seconds: float) -> EndpointState:
    """Count a success or failure; open (or re-open, for longer) the breaker at `threshold` failures."""
    state_columns = (endpoints.c.url, endpoints.c.consecutive_failures, endpoints.c.paused_until,
                     endpoints.c.disabled_at)
    this = endpoints.c.url == url
    with engine.begin() as conn:
        _ensure(conn, url, now)
        failures = 0 if delivered else endpoints.c.consecutive_failures + 1  # atomic across replicas
        paused = {"paused_until": None} if delivered else {}
        state = EndpointState(*conn.execute(
            update(endpoints).where(this).values(consecutive_failures=failures, updated_at=now, **paused)
            .returning(*state_columns)).one())
        if state.breaker_open(threshold):
            pause = min(base_pause_seconds * 2 ** (state.consecutive_failures - threshold), MAX_PAUSE_SECONDS)
            state = EndpointState(*conn.execute(
                update(endpoints).where(this).values(paused_until=now + timedelta(seconds=pause))
                .returning(*state_columns)).one())
    return state


def disable(engine: Engine, url: str, reason: str, now: datetime) -> EndpointState:
    with engine.begin() as conn:
        _ensure(conn, url, now)
        return EndpointState(*conn.execute(
            update(endpoints).where(endpoints.c.url == url)
            .values(disabled_at=now, disabled_reason=reason, updated_at=now)
            .returning(endpoints.c.url, endpoints.c.consecutive_failures, endpoints.c.paused_until,
                       endpoints.c.disabled_at)).one())


def enable(engine: Engine, urls: Iterable[str], now: datetime) -> list[str]:
    """Re-enable disabled endpoints and close their breakers; returns the ones that were disabled."""
    with engine.begin() as conn:
        return list(conn.scalars(
            update(endpoints).where(endpoints.c.url.in_(set(urls)), endpoints.c.disabled_at.is_not(None))
            .values(disabled_at=None, disabled_reason=None, consecutive_failures=0, paused_until=None,
                    updated_at=now)
            .returning(endpoints.c.url)))


def paused_count(engine: Engine, now: datetime) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(endpoints).where(endpoints.c.paused_until > now))


def _ensure(conn, url: str, now: datetime) -> None:
    conn.execute(insert_ignoring_conflicts(conn.dialect.name, endpoints, ["url"]).values(url=url, updated_at=now))
