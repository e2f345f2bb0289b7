"""Metrics of the MTN flow; the engine's outbox and job metrics cover the rest."""
from __future__ import annotations

from prometheus_client import Counter, Gauge

PROVIDER_BALANCE = Gauge("reconciler_provider_balance", "The provider account's last balance reading", ["provider"])
BALANCE_ALERT_THRESHOLD = Gauge(
    "reconciler_provider_balance_alert_threshold", "Below this balance the account needs a top-up "
    "(mtn.balance_alert_threshold)", ["provider"])
SUBMISSION_RESULTS = ("submitted", "in_doubt", "failed", "rejected", "retry", "dead", "deferred")
MTN_SUBMISSIONS = Counter(
    "reconciler_mtn_submissions_total",
    f"MTN orders handled by the submit job, by result ({', '.join(SUBMISSION_RESULTS)})", ["result"])
MTN_SETTLED = Counter(
    "reconciler_mtn_settled_total", "MTN orders settled, by what told us (webhook, history) and the new status",
    ["source", "status"])
MTN_RECONCILE_RUNS = Counter(
    "reconciler_mtn_reconcile_runs_total", "History reconciliation cycles, by result (ok, history_unavailable)",
    ["result"])


for _result in SUBMISSION_RESULTS:  # the series exist from the start, at 0, so rate() has data at once
    MTN_SUBMISSIONS.labels(_result)
for _source in ("webhook", "history"):
    for _status in ("submitted", "completed", "failed"):
        MTN_SETTLED.labels(_source, _status)
for _result in ("ok", "history_unavailable"):
    MTN_RECONCILE_RUNS.labels(_result)
