"""The one source of 'now' for the engine: aware UTC, injectable so tests can move time without sleeping."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
