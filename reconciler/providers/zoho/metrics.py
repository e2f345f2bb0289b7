"""Metrics of the Zoho flow; the engine's outbox and job metrics cover the rest."""
from __future__ import annotations

from prometheus_client import Counter, Gauge

ZOHO_CALLS = Counter(
    "reconciler_zoho_calls_total", "Zoho Books API calls, by operation and result (ok, not_found, rejected, "
    "rate_limited, daily_cap, auth_failed, unavailable)", ["operation", "result"])
TOKEN_REFRESHES = Counter(
    "reconciler_zoho_token_refreshes_total", "Access-token requests to the Zoho accounts server, by result (ok, "
    "refused: the flow is paused; unavailable)", ["result"])
RATE_LIMIT_WAITS = Counter(
    "reconciler_zoho_rate_limit_waits_total", "Zoho calls that waited for room under zoho.requests_per_minute "
    "(shared by all replicas)")
DAILY_REQUESTS_USED = Gauge(
    "reconciler_zoho_daily_requests_used", "Zoho API calls counted today (UTC) by all replicas")
DAILY_REQUESTS_LIMIT = Gauge(
    "reconciler_zoho_daily_requests_limit", "Zoho API calls allowed per day (zoho.requests_per_day)")
TOKEN_EXPIRY = Gauge(
    "reconciler_zoho_token_expiry_timestamp_seconds", "When the shared Zoho access token expires (Unix time)")

ZOHO_SUBMISSIONS = Counter(
    "reconciler_zoho_submissions_total",
    "T2Mobile orders handled by the Zoho submit job, by result (completed; adopted: completed with the sales "
    "order an earlier attempt created; in_doubt, failed, rejected, retry, dead, deferred)", ["result"])

CALL_OPERATIONS = ("find_contact", "create_contact", "find_salesorder", "create_salesorder", "mark_open", "organisation")
CALL_RESULTS = ("ok", "not_found", "rejected", "rate_limited", "daily_cap", "auth_failed", "unavailable")
SUBMISSION_RESULTS = ("completed", "adopted", "in_doubt", "failed", "rejected", "retry", "dead", "deferred")

for _operation in CALL_OPERATIONS:  # the series exist from the start, at 0, so rate() has data at once
    for _result in CALL_RESULTS:
        ZOHO_CALLS.labels(_operation, _result)
for _result in ("ok", "refused", "unavailable"):
    TOKEN_REFRESHES.labels(_result)
for _result in SUBMISSION_RESULTS:
    ZOHO_SUBMISSIONS.labels(_result)

METRICS = (ZOHO_CALLS, TOKEN_REFRESHES, RATE_LIMIT_WAITS, DAILY_REQUESTS_USED, DAILY_REQUESTS_LIMIT, TOKEN_EXPIRY,
           ZOHO_SUBMISSIONS)
