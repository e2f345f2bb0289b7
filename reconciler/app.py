"""The one assembly of the daemon: config → engine → outboxes → providers → jobs → routes.

`reconciler run`, `reconciler demo` and the tests all build the daemon here, so what runs in a test is what
runs in production. Adding a provider is adding it to PROVIDERS; no engine file changes.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Sequence

from prometheus_client.metrics import MetricWrapperBase
from sqlalchemy import Engine

from jobs import refresh_metrics, rescue_leases
from jobs.deliver_webhooks import DeliverWebhooks
from reconciler.config import Config
from reconciler.engine import metrics as engine_metrics
from reconciler.engine.clock import Clock, utcnow
from reconciler.engine.daemon import Daemon, new_worker_id
from reconciler.engine.job import Job, JobContext
from reconciler.engine.outbox import OutboxPolicy
from reconciler.http import metrics as http_metrics
from reconciler.http.admin import Probe, admin_listener, database_not_ready
from reconciler.http.listener import HttpListener, Route
from reconciler.providers.base import Provider, RouteKey
from reconciler.providers.mtn.provider import MTN
from reconciler.providers.zoho.provider import ZOHO
from reconciler.webhooks import metrics as webhook_metrics
from reconciler.webhooks.deliveries import delivery_outbox_policy

PROVIDERS: tuple[Provider, ...] = (MTN, ZOHO)


def configured_providers(config: Config) -> list[Provider]:
    return [provider for provider in PROVIDERS if provider.configured(config)]


def outbox_policies(config: Config) -> list[OutboxPolicy]:
    """Every provider's outboxes (configured or not: their leases must still be rescued) and the deliveries'."""
    return [policy for provider in PROVIDERS for policy in provider.outboxes(config)] + [delivery_outbox_policy(config)]


def jobs(config: Config) -> list[Job]:
    """The engine's own jobs, the webhook sender, and each configured provider's jobs."""
    return [
        Job("rescue_leases", config.daemon.rescue_interval_seconds, rescue_leases.run),
        Job("refresh_metrics", config.daemon.metrics_interval_seconds, refresh_metrics.run),
        Job("deliver_webhooks", config.webhooks.poll_interval_seconds, DeliverWebhooks(config).run),
        *(job for provider in configured_providers(config) for job in provider.jobs(config)),
    ]


def metrics() -> list[MetricWrapperBase]:
    """Every metric the daemon exports: the engine's, the provider calls', the webhooks' and each provider's."""
    shared = [m for module in (engine_metrics, http_metrics, webhook_metrics) for m in vars(module).values()
              if isinstance(m, MetricWrapperBase)]
    return shared + [m for provider in PROVIDERS for m in provider.metrics()]


def public_routes(config: Config, engine: Engine, clock: Clock = utcnow) -> dict[RouteKey, Route]:
    """The public listener's routes: every provider's (webhooks in, partner intake); a provider that is not
    configured answers 503 there."""
    routes: dict[RouteKey, Route] = {}
    for provider in PROVIDERS:
        routes.update(provider.routes(config, engine, clock))
    return routes


def admin(config: Config, engine: Engine, alive: Probe) -> HttpListener:
    """The admin listener; `run` starts it before the database is reachable, so /readyz can say why not."""
    return admin_listener(config.admin.host, config.admin.port, alive=alive, ready=lambda: database_not_ready(engine))


@dataclass
class Assembly:
    """A daemon's parts, built but not started."""

    config: Config
    engine: Engine
    context: JobContext
    jobs: Sequence[Job]
    routes: dict[RouteKey, Route] = field(default_factory=dict)

    def daemon(self) -> Daemon:
        return Daemon(self.context, list(self.jobs))

    def public_listener(self) -> HttpListener:
        receiver = self.config.receiver
        return HttpListener(receiver.host, receiver.port, receiver.max_body_bytes, self.routes)


def assemble(config: Config, engine: Engine, *, worker_id: str | None = None, clock: Clock = utcnow,
             stop: threading.Event | None = None) -> Assembly:
    """Build the daemon for `config` on a migrated database; `worker_id` is new per process start by default."""
    worker_id = worker_id or new_worker_id()
    outboxes = {policy.table.name: policy.outbox(engine, worker_id, config.daemon.lease_seconds, clock)
                for policy in outbox_policies(config)}
    context = JobContext(config=config, engine=engine, worker_id=worker_id, outboxes=outboxes,
                         stop=stop or threading.Event(), clock=clock)
    return Assembly(config, engine, context, jobs(config), public_routes(config, engine, clock))
