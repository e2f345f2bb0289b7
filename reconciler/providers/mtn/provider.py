"""The MTN data-bundle reseller as the daemon sees it: its outbox, jobs, webhook route, commands, metrics."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping, Sequence

import click
from prometheus_client.metrics import MetricWrapperBase
from sqlalchemy import Engine

from jobs import apply_mtn_webhooks
from jobs.reconcile_mtn import ReconcileMtn
from jobs.submit_mtn import SubmitMtn
from reconciler.config import Config
from reconciler.coordination.pauses import Pause
from reconciler.engine.clock import Clock
from reconciler.engine.job import Job
from reconciler.engine.outbox import OutboxPolicy
from reconciler.engine.story import OrderRecord
from reconciler.http.listener import Route
from reconciler.providers.base import RouteKey
from reconciler.providers.mtn import metrics
from reconciler.providers.mtn.account import resume_by_hand
from reconciler.providers.mtn.cli import balance, enqueue_mtn_order, fake_mtn, reconcile, retry
from reconciler.providers.mtn.client import MtnClient, MtnError, mtn_client
from reconciler.providers.mtn.orders import mtn_order_record
from reconciler.providers.mtn.outbox import outbox_policy
from reconciler.providers.mtn.webhook_route import mtn_webhook_route


class MtnProvider:
    name = "mtn"

    def configured(self, config: Config) -> bool:
        return bool(config.mtn.base_url)

    def outboxes(self, config: Config) -> Sequence[OutboxPolicy]:
        return [outbox_policy(config)]

    def jobs(self, config: Config) -> Sequence[Job]:
        settings = config.mtn
        return [
            Job("submit_mtn", settings.poll_interval_seconds, SubmitMtn(config).run),
            Job("apply_mtn_webhooks", settings.poll_interval_seconds, apply_mtn_webhooks.run),
            Job("reconcile_mtn", settings.reconcile_interval_seconds,
                ReconcileMtn(settings, outbox_policy(config).retries).run),
        ]

    def routes(self, config: Config, engine: Engine, clock: Clock) -> dict[RouteKey, Route]:
        return {("POST", "/api/webhook/mtn"): mtn_webhook_route(engine, config.mtn.webhook_secret, clock)}

    def commands(self) -> Sequence[click.Command]:
        return [retry, balance, reconcile]

    def enqueue_command(self) -> click.Command:
        return enqueue_mtn_order

    def check(self, config: Config, engine: Engine | None) -> str:
        settings = config.mtn
        client = (mtn_client(config, engine) if engine is not None else
                  MtnClient(settings.base_url, settings.api_key, settings.request_timeout_seconds,
                            settings.connect_timeout_seconds))
        try:
            return f"balance {client.balance()}"
        except MtnError as exc:
            raise RuntimeError(f"{settings.base_url}: {exc.message}") from None

    def fake_command(self) -> click.Command:
        return fake_mtn

    def find_order(self, engine: Engine, ref: str) -> OrderRecord | None:
        return mtn_order_record(engine, ref)

    def metrics(self) -> Sequence[MetricWrapperBase]:
        return [metrics.PROVIDER_BALANCE, metrics.BALANCE_ALERT_THRESHOLD, metrics.MTN_SUBMISSIONS, metrics.MTN_SETTLED,
                metrics.MTN_RECONCILE_RUNS]

    def status(self, config: Config, engine: Engine, now: datetime) -> Mapping[str, Any]:
        return {}  # its pause and balance are in provider_state, which `status` shows for every provider

    def resume(self, engine: Engine, by: str, now: datetime) -> Pause | None:
        return resume_by_hand(engine, by, now)


MTN = MtnProvider()
