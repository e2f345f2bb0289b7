"""Prometheus metrics of the engine, named after the Prometheus naming guide; one definition each.

Series with labels known in advance (outbox tables and their statuses) exist from the start at 0, so an alert's
rate() has data before the first event; a job's series are made when the daemon is built (engine.daemon)."""
from __future__ import annotations

import platform
from importlib.metadata import version

from prometheus_client import Counter, Gauge, Histogram

from reconciler.engine.schema import DELIVERED, OUTBOX_TABLES, STATUSES_BY_TABLE, TERMINAL_STATUSES

BUILD_INFO = Gauge("reconciler_build_info", "Always 1; the running version in its labels", ["version", "python"])

OUTBOX_ROWS = Gauge(
    "reconciler_outbox_rows", "Rows in an outbox table by status, refreshed periodically", ["table", "status"])
OUTBOX_OLDEST_QUEUED_AGE = Gauge(
    "reconciler_outbox_oldest_queued_age_seconds",
    "How long the longest-waiting due queued row has been waiting past its next_attempt_at", ["table"])
OUTBOX_OLDEST_WAITING_AGE = Gauge(
    "reconciler_outbox_oldest_waiting_age_seconds",
    "Age since created_at of the oldest queued row that is not due yet (deferred: balance, recipient, pause, "
    "retry)", ["table"])
OUTBOX_OLDEST_AGE = Gauge(
    "reconciler_outbox_oldest_age_seconds",
    "Age since created_at of the oldest row in each unfinished status (queued, in_flight, in_doubt, submitted); "
    "0 when none", ["table", "status"])
OUTBOX_OUTCOMES = Counter(
    "reconciler_outbox_outcomes_total",
    "Rows that reached a final status (orders: completed, failed, rejected, dead; deliveries: delivered, dead), "
    "whether a claim's finalise or a settlement (webhook, history, a person) wrote it", ["table", "status"])
OUTBOX_CLAIMED = Counter("reconciler_outbox_claimed_total", "Rows claimed under a lease", ["table"])
OUTBOX_FINALISED = Counter(
    "reconciler_outbox_finalised_total", "Claimed rows finalised, by the status they moved to", ["table", "outcome"])
OUTBOX_FENCED = Counter(
    "reconciler_outbox_fenced_total", "Outcomes refused because this worker no longer held the lease", ["table"])
OUTBOX_RELEASED = Counter(
    "reconciler_outbox_released_total", "Unstarted claimed rows handed back to the queue", ["table"])
OUTBOX_RESCUED = Counter(
    "reconciler_outbox_leases_rescued_total", "Expired leases taken back by the rescuer", ["table"])
OUTBOX_CLAIM_DURATION = Histogram(
    "reconciler_outbox_claim_duration_seconds", "Time one claim statement and its commit took", ["table"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))

JOB_RUNS = Counter("reconciler_job_runs_total", "Job runs by result (ok, error, skipped)", ["job", "result"])
JOB_DURATION = Histogram("reconciler_job_duration_seconds", "Time one job run took", ["job"])
JOB_LAST_SUCCESS = Gauge(
    "reconciler_job_last_success_timestamp_seconds",
    "Unix time the job last finished without an error (the daemon's start until it has)", ["job"])
JOB_INTERVAL = Gauge(
    "reconciler_job_interval_seconds", "How often the job is meant to run (86400 for a time-of-day job)", ["job"])
DATABASE_ERRORS = Counter(
    "reconciler_database_errors_total", "Job runs that failed because the database was unreachable", ["job"])
LOOP_LAST_TICK = Gauge(
    "reconciler_loop_last_tick_timestamp_seconds", "Unix time the daemon's main loop last ran")

INBOUND_WEBHOOKS = Counter(
    "reconciler_inbound_webhooks_total",
    "Provider webhooks received, by result (stored, duplicate, bad_signature, bad_request, not_configured)",
    ["provider", "result"])

PROVIDER_PAUSED = Gauge(
    "reconciler_provider_paused", "1 while a provider's order flow is paused, by reason (MTN: unauthorised, "
    "insufficient_balance, rate_limited; Zoho: unauthorised, daily_cap), as the shared pauses table says",
    ["provider", "reason"])

FINAL = frozenset((*TERMINAL_STATUSES, DELIVERED))  # the statuses OUTBOX_OUTCOMES counts


def _initialise() -> None:
    BUILD_INFO.labels(version("reconciler"), platform.python_version()).set(1)
    for table in OUTBOX_TABLES:
        name = table.name
        for metric in (OUTBOX_CLAIMED, OUTBOX_FENCED, OUTBOX_RELEASED, OUTBOX_RESCUED, OUTBOX_CLAIM_DURATION,
                       OUTBOX_OLDEST_QUEUED_AGE, OUTBOX_OLDEST_WAITING_AGE):
            metric.labels(name)
        for status in STATUSES_BY_TABLE[name]:
            OUTBOX_ROWS.labels(name, status)
            OUTBOX_FINALISED.labels(name, status)
            (OUTBOX_OUTCOMES if status in FINAL else OUTBOX_OLDEST_AGE).labels(name, status)


_initialise()
