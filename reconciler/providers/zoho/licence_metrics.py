"""Metrics of the licence lifecycle: licences by status, reminders sent and reminders still owed.

The gauges are read from the database by jobs/licence_metrics.py (every daemon.metrics_interval_seconds) and
after each reminder run and renewal check."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from prometheus_client import Counter, Gauge
from sqlalchemy import Engine

from reconciler.config import Config
from reconciler.providers.zoho.licences import subscription_counts
from reconciler.providers.zoho.reminders import count_unreminded

SUBSCRIPTIONS = Gauge("reconciler_subscriptions", "Licences by status (active, expired, revoked)", ["status"])
LICENCES_EXPIRING_UNREMINDED = Gauge(
    "reconciler_licences_expiring_unreminded",
    "Active licences expiring within partner.reminder_days that have had no EXPIRY_REMINDER for their current "
    "expiry (after the 02:00 run it should be 0 until new licences enter the window)")
EXPIRY_REMINDERS = Counter("reconciler_expiry_reminders", "EXPIRY_REMINDER events queued for the partner")
LICENCE_EXTENSIONS_REPAIRED = Counter(
    "reconciler_licence_extensions_repaired",
    "Completed renewals whose missing extension the 03:00 check applied, by result (repaired, no_licence, error)",
    ["result"])

for _status in ("active", "expired", "revoked"):  # the series exist from the start, so panels and alerts have data
    SUBSCRIPTIONS.labels(_status)
for _result in ("repaired", "no_licence", "error"):
    LICENCE_EXTENSIONS_REPAIRED.labels(_result)

LICENCE_METRICS = (SUBSCRIPTIONS, LICENCES_EXPIRING_UNREMINDED, EXPIRY_REMINDERS, LICENCE_EXTENSIONS_REPAIRED)


def refresh(engine: Engine, config: Config, now: datetime) -> None:
    """Set the gauges from the database."""
    for status, count in subscription_counts(engine).items():
        SUBSCRIPTIONS.labels(status).set(count)
    LICENCES_EXPIRING_UNREMINDED.set(count_unreminded(engine, ZoneInfo(config.partner.timezone),
                                                      config.partner.reminder_days, now))
