"""Metrics of the MTN flow; the engine's outbox and job metrics cover the rest."""
from __future__ import annotations

from prometheus_client import Counter, Gauge

PROVIDER_BALANCE = Gauge("reconciler_provider_balance", "The provider account's last balance reading", ["provider"])
BALANCE_ALERT_THRESHOLD = Gauge(
    "reconciler_provider_balance_alert_threshold", "Below this balance the account needs a top-up "
    "(mtn.balance_alert_threshold)", ["provider"])
MTN_SUBMISSIONS = Counter(
    "reconciler_mtn_submissions_total",
    "MTN orders handled by the submit job, by result (submitted, in_doubt, failed, rejected, retry, dead, "
    "deferred)", ["result"])
MTN_SETTLED = Counter(
    "reconciler_mtn_settled_total", "MTN orders settled, by what told us (webhook, history) and the new status",
    ["source", "status"])
MTN_RECONCILE_RUNS = Counter(
    "reconciler_mtn_reconcile_runs_total", "History reconciliation cycles, by result (ok, history_unavailable)",
    ["result"])
