"""Refresh the licence gauges (licences by status, reminders still owed) every daemon.metrics_interval_seconds."""
from __future__ import annotations

from reconciler.config import Config
from reconciler.engine.job import Job, JobContext
from reconciler.providers.zoho import licence_metrics


def job(config: Config) -> Job:
    return Job("licence_metrics", config.daemon.metrics_interval_seconds, run)


def run(ctx: JobContext) -> None:
    licence_metrics.refresh(ctx.engine, ctx.config, ctx.clock())
