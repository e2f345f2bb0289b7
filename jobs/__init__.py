"""The periodic jobs, one module each; `default_jobs` lists what `reconciler run` runs."""
from __future__ import annotations

from reconciler.config import Config
from reconciler.engine.job import Job

from jobs import apply_mtn_webhooks, refresh_metrics, rescue_leases
from jobs.deliver_webhooks import DeliverWebhooks
from jobs.reconcile_mtn import ReconcileMtn
from jobs.submit_mtn import SubmitMtn


def default_jobs(config: Config) -> list[Job]:
    """The engine's own jobs, plus each provider's flow when that provider is configured (has a base URL)."""
    jobs = [
        Job("rescue_leases", config.daemon.rescue_interval_seconds, rescue_leases.run),
        Job("refresh_metrics", config.daemon.metrics_interval_seconds, refresh_metrics.run),
        Job("deliver_webhooks", config.webhooks.poll_interval_seconds, DeliverWebhooks(config).run),
    ]
    if config.mtn.base_url:
        jobs += [
            Job("submit_mtn", config.mtn.poll_interval_seconds, SubmitMtn(config).run),
            Job("apply_mtn_webhooks", config.mtn.poll_interval_seconds, apply_mtn_webhooks.run),
            Job("reconcile_mtn", config.mtn.reconcile_interval_seconds, ReconcileMtn(config.mtn).run),
        ]
    return jobs
