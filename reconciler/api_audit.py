"""The api_calls audit: every provider request and its answer. Clients never pass headers here,
so API keys and tokens cannot reach the table."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

from sqlalchemy import Engine, insert

from reconciler.clock import Clock, utcnow
from reconciler.schema import api_calls


@dataclass(frozen=True)
class ApiCall:
    provider: str
    method: str
    url: str
    request_body: str | None
    status_code: int | None
    response_body: str | None
    error: str | None
    duration_ms: int


def audit_to(engine: Engine, clock: Clock = utcnow) -> Callable[[ApiCall], None]:
    """A recorder for a client's `audit` hook: one row per call, in its own short transaction."""
    def record(call: ApiCall) -> None:
        with engine.begin() as conn:
            conn.execute(insert(api_calls).values(**asdict(call), created_at=clock()))
    return record
