"""The periodic jobs, one module each; `engine_jobs` lists the ones every daemon runs."""
from __future__ import annotations

from reconciler.config import Config
from reconciler.job import Job

from jobs import refresh_metrics, rescue_leases


def engine_jobs(config: Config) -> list[Job]:
    return [
        Job("rescue_leases", config.daemon.rescue_interval_seconds, rescue_leases.run),
        Job("refresh_metrics", config.daemon.metrics_interval_seconds, refresh_metrics.run),
    ]
