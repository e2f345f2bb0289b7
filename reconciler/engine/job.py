"""What a periodic job is and what it is handed: the pieces every job module in jobs/ uses."""
from __future__ import annotations

import threading
from dataclasses import KW_ONLY, dataclass
from datetime import datetime
from typing import Callable

from sqlalchemy import Engine

from reconciler.config import Config
from reconciler.engine.clock import Clock
from reconciler.engine.outbox import Outbox
from reconciler.engine.schedules import DailyAt, Every


@dataclass(frozen=True)
class JobContext:
    config: Config
    engine: Engine
    worker_id: str
    outboxes: dict[str, Outbox]
    stop: threading.Event  # set on SIGTERM/SIGINT: claim nothing new, finish what is started
    clock: Clock


@dataclass(frozen=True)
class Job:
    """`run(ctx)` every `interval_seconds` on each replica; or, given `daily_at` (and None for the interval),
    `run(ctx, slot_at)` once per daily slot across all replicas and restarts. `slot_at` is the slot's planned
    time, aware UTC; the run itself may come later (up to the lateness, or as a retry), so a job works for its
    slot's day, not for whatever day it is when it runs. Each run has its own thread, never overlapping itself.
    """

    name: str
    interval_seconds: float | None
    run: Callable[[JobContext], None] | Callable[[JobContext, datetime], None]
    _: KW_ONLY
    daily_at: DailyAt | None = None

    def __post_init__(self) -> None:
        if (self.interval_seconds is None) == (self.daily_at is None):
            raise ValueError(f"job {self.name}: give either interval_seconds or daily_at")

    @property
    def when(self) -> Every | DailyAt:
        return self.daily_at or Every(self.interval_seconds)
