"""The periodic jobs, one module each; `default_jobs` lists what `reconciler run` runs."""
from __future__ import annotations

from reconciler.config import Config
from reconciler.job import Job

from jobs import refresh_metrics, rescue_leases
from jobs.deliver_webhooks import DeliverWebhooks


def default_jobs(config: Config) -> list[Job]:
    return [
        Job("rescue_leases", config.daemon.rescue_interval_seconds, rescue_leases.run),
        Job("refresh_metrics", config.daemon.metrics_interval_seconds, refresh_metrics.run),
        Job("deliver_webhooks", config.webhooks.poll_interval_seconds, DeliverWebhooks(config).run),
    ]
