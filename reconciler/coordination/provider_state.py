"""Per-provider readings shared by all replicas: the last balance reading (and, for OAuth providers, the
token slot's row). One row per provider in provider_state; pauses live in coordination.pauses."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Connection, Engine, select, update

from reconciler.engine.db import insert_ignoring_conflicts
from reconciler.engine.schema import provider_state


@dataclass(frozen=True)
class ProviderState:
    provider: str
    balance: Decimal | None = None
    balance_checked_at: datetime | None = None

    def balance_fresh(self, now: datetime, max_age_seconds: float) -> bool:
        return (self.balance is not None and self.balance_checked_at is not None
                and (now - self.balance_checked_at).total_seconds() < max_age_seconds)


_COLUMNS = (provider_state.c.provider, provider_state.c.balance, provider_state.c.balance_checked_at)


def load_state(engine: Engine, provider: str) -> ProviderState:
    with engine.connect() as conn:
        row = conn.execute(select(*_COLUMNS).where(provider_state.c.provider == provider)).first()
    return ProviderState(*row) if row is not None else ProviderState(provider)


def load_states(engine: Engine) -> list[ProviderState]:
    with engine.connect() as conn:
        return [ProviderState(*row) for row in conn.execute(select(*_COLUMNS).order_by(provider_state.c.provider))]


def record_balance(engine: Engine, provider: str, balance: Decimal | None, now: datetime) -> ProviderState:
    """Keep a balance reading for every replica; None forgets it, so the next check fetches again."""
    with engine.begin() as conn:
        ensure_provider_row(conn, provider, now)
        row = conn.execute(update(provider_state).where(provider_state.c.provider == provider)
                           .values(balance=balance, balance_checked_at=now if balance is not None else None,
                                   updated_at=now).returning(*_COLUMNS)).one()
    return ProviderState(*row)


def ensure_provider_row(conn: Connection, provider: str, now: datetime) -> None:
    conn.execute(insert_ignoring_conflicts(conn.dialect.name, provider_state, ["provider"])
                 .values(provider=provider, updated_at=now))
