"""What a periodic job is and what it is handed: the pieces every job module in jobs/ uses."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import Engine

from reconciler.engine.clock import Clock
from reconciler.config import Config
from reconciler.engine.outbox import Outbox


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
    """`run(ctx)` every `interval_seconds`, in its own thread, never overlapping itself."""

    name: str
    interval_seconds: float
    run: Callable[[JobContext], None]
