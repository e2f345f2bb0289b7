"""Per-endpoint delivery state shared by all replicas.

Circuit breaker (coordination.pauses, key 'webhook:<url>'): after `threshold` consecutive failures an
endpoint is paused; when the pause ends one delivery, on one replica, probes it; a failed probe pauses it
again for twice as long (up to an hour), a success closes the breaker. A 410 disables the endpoint until a
person replays to it (webhook_endpoints).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

from sqlalchemy import Engine, select, update

from reconciler.coordination.pauses import Pause, Pauses
from reconciler.engine.db import insert_ignoring_conflicts
from reconciler.engine.schema import webhook_endpoints as endpoints

MAX_PAUSE_SECONDS = 3600.0
WEBHOOK_PAUSE_PREFIX = "webhook:"


def pause_key(url: str) -> str:
    return WEBHOOK_PAUSE_PREFIX + url


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


def _state(url: str, pause: Pause, disabled_at: datetime | None) -> EndpointState:
    return EndpointState(url, pause.consecutive_failures, pause.paused_until, disabled_at)


def load_states(engine: Engine, urls: Iterable[str]) -> dict[str, EndpointState]:
    urls = set(urls)
    with engine.connect() as conn:
        disabled = dict(conn.execute(select(endpoints.c.url, endpoints.c.disabled_at)
                                     .where(endpoints.c.url.in_(urls))).all())
    breakers = Pauses(engine).get_many(pause_key(url) for url in urls)
    return {url: _state(url, breakers[pause_key(url)], disabled.get(url)) for url in urls}


def record_result(engine: Engine, url: str, delivered: bool, now: datetime, threshold: int,
                  base_pause_seconds: float, disabled_at: datetime | None = None) -> EndpointState:
    """Count a success or failure; open (or re-open, for longer) the breaker at `threshold` failures."""
    pauses = Pauses(engine)
    if delivered:
        return _state(url, pauses.record_success(pause_key(url), now), disabled_at)
    return _state(url, pauses.record_failure(pause_key(url), now, threshold, base_pause_seconds, MAX_PAUSE_SECONDS,
                                             reason="endpoint_failing"), disabled_at)


def take_probe(engine: Engine, url: str, worker: str, now: datetime) -> bool:
    """The breaker's pause is over: True for the one replica whose next delivery probes the endpoint."""
    return Pauses(engine).take_probe(pause_key(url), worker, now)


def disable(engine: Engine, url: str, reason: str, now: datetime) -> EndpointState:
    with engine.begin() as conn:
        conn.execute(insert_ignoring_conflicts(conn.dialect.name, endpoints, ["url"]).values(url=url, updated_at=now))
        conn.execute(update(endpoints).where(endpoints.c.url == url)
                     .values(disabled_at=now, disabled_reason=reason, updated_at=now))
    return _state(url, Pauses(engine).get(pause_key(url)), now)


def enable(engine: Engine, urls: Iterable[str], now: datetime) -> list[str]:
    """Re-enable disabled endpoints and close their breakers; returns the ones that were disabled."""
    with engine.begin() as conn:
        enabled = list(conn.scalars(
            update(endpoints).where(endpoints.c.url.in_(set(urls)), endpoints.c.disabled_at.is_not(None))
            .values(disabled_at=None, disabled_reason=None, updated_at=now)
            .returning(endpoints.c.url)))
    pauses = Pauses(engine)
    for url in enabled:
        pauses.resume(pause_key(url), now)
    return enabled


def paused_count(engine: Engine, now: datetime) -> int:
    return Pauses(engine).count_holding(WEBHOOK_PAUSE_PREFIX, now)
