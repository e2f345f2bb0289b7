"""Zoho Books for T2Mobile licences as the daemon sees it: its outbox, jobs, partner routes, commands, metrics."""
from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Mapping, Sequence

import click
from prometheus_client.metrics import MetricWrapperBase
from sqlalchemy import Engine

from jobs import expiry_reminders, licence_metrics, prune_idempotency_keys, renewal_check
from jobs.submit_zoho import SubmitZoho
from reconciler.config import Config
from reconciler.coordination.pauses import Pause, Pauses
from reconciler.engine.clock import Clock
from reconciler.engine.job import Job
from reconciler.engine.outbox import OutboxPolicy
from reconciler.engine.story import OrderRecord
from reconciler.http.listener import Route
from reconciler.providers.base import RouteKey
from reconciler.providers.zoho import metrics
from reconciler.providers.zoho.cli import enqueue_zoho_order, fake_zoho
from reconciler.providers.zoho.cli_licences import reminders, subscriptions
from reconciler.providers.zoho.client import ZohoClient, ZohoError
from reconciler.providers.zoho.intake import partner_routes
from reconciler.providers.zoho.licence_metrics import LICENCE_METRICS
from reconciler.providers.zoho.oauth import PAUSE_KEY
from reconciler.providers.zoho.orders import zoho_order_record
from reconciler.providers.zoho.outbox import outbox_policy

CHECK_WORKER = "check-config"


class ZohoProvider:
    name = "zoho"

    def configured(self, config: Config) -> bool:
        return bool(config.zoho.organization_id and config.partner.webhook_url)

    def outboxes(self, config: Config) -> Sequence[OutboxPolicy]:
        return [outbox_policy(config)]

    def jobs(self, config: Config) -> Sequence[Job]:
        return [Job("submit_zoho", config.zoho.poll_interval_seconds, SubmitZoho(config).run),
                expiry_reminders.job(config), renewal_check.job(config), licence_metrics.job(config),
                prune_idempotency_keys.job(config)]

    def routes(self, config: Config, engine: Engine, clock: Clock) -> dict[RouteKey, Route]:
        return partner_routes(config, engine, clock)

    def commands(self) -> Sequence[click.Command]:
        return [subscriptions, reminders]

    def enqueue_command(self) -> click.Command:
        return enqueue_zoho_order

    def check(self, config: Config, engine: Engine | None) -> str:
        if engine is None:
            raise RuntimeError("Zoho is checked through the database (the shared token, the rate limit): "
                               "fix the database first")
        try:
            return f"organisation {ZohoClient(config.zoho, engine, CHECK_WORKER).organisation()}"
        except ZohoError as exc:
            raise RuntimeError(f"{config.zoho.api_url}: {exc.message}") from None

    def fake_command(self) -> click.Command:
        return fake_zoho

    def find_order(self, engine: Engine, ref: str) -> OrderRecord | None:
        return zoho_order_record(engine, ref)

    def metrics(self) -> Sequence[MetricWrapperBase]:
        return [*metrics.METRICS, *LICENCE_METRICS]

    def status(self, config: Config, engine: Engine, now: datetime) -> Mapping[str, Any]:
        usage = ZohoClient(config.zoho, engine, CHECK_WORKER).usage(now)
        return {name: value.isoformat() if isinstance(value, datetime) else value
                for name, value in dataclasses.asdict(usage).items()}

    def resume(self, engine: Engine, by: str, now: datetime) -> Pause | None:
        return Pauses(engine).resume_by(PAUSE_KEY, by, now)


ZOHO = ZohoProvider()
