"""What a provider brings to the daemon. reconciler.app assembles the configured providers' pieces; the engine,
http, coordination and webhooks packages never import a provider."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping, Protocol, Sequence

import click
from prometheus_client.metrics import MetricWrapperBase
from sqlalchemy import Engine

from reconciler.config import Config
from reconciler.coordination.pauses import Pause
from reconciler.engine.clock import Clock
from reconciler.engine.job import Job
from reconciler.engine.outbox import OutboxPolicy
from reconciler.engine.story import OrderRecord
from reconciler.http.listener import Route

RouteKey = tuple[str, str]  # (method, path)


class Provider(Protocol):
    name: str

    def configured(self, config: Config) -> bool:
        """Is this provider's flow switched on (its jobs run, its routes answer)?"""

    def outboxes(self, config: Config) -> Sequence[OutboxPolicy]:
        """Its outbox tables with their retry policy; declared even when the flow is off, so leases are rescued."""

    def jobs(self, config: Config) -> Sequence[Job]:
        """Its periodic jobs (modules of jobs/), run only when the provider is configured."""

    def routes(self, config: Config, engine: Engine, clock: Clock) -> dict[RouteKey, Route]:
        """Its routes on the public listener."""

    def commands(self) -> Sequence[click.Command]:
        """Its top-level CLI commands."""

    def enqueue_command(self) -> click.Command:
        """`reconciler enqueue <name>`: insert an order as a shop would."""

    def check(self, config: Config, engine: Engine | None) -> str:
        """`check-config --connect`: one call with the configured credentials; what it showed, or an exception
        saying why it failed. `engine` records the call (None when the database itself is not usable)."""

    def fake_command(self) -> click.Command:
        """`reconciler fake <name>`: run its fake provider standalone, for trying the daemon by hand."""

    def find_order(self, engine: Engine, ref: str) -> OrderRecord | None:
        """Its order whose id or own reference is `ref` (for `reconciler order show`); ValueError when
        `ref` names two of its orders."""

    def metrics(self) -> Sequence[MetricWrapperBase]:
        """Its Prometheus metrics (the engine's and the webhooks' are shared by all)."""

    def status(self, config: Config, engine: Engine, now: datetime) -> Mapping[str, Any]:
        """What `reconciler status` shows of it beyond its pause and balance (e.g. its API usage and token
        expiry; never a secret), as plain values; empty when there is nothing more."""

    def resume(self, engine: Engine, by: str, now: datetime) -> Pause | None:
        """`reconciler resume <name>`: end its pause now, whatever the reason, recorded with who did it (`by`);
        the pause it ended, or None when it was not paused."""
