"""Metrics of outgoing webhook deliveries."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELIVERY_OUTCOMES = ("delivered", "retry", "dead", "deferred")
WEBHOOK_DELIVERIES = Counter(
    "reconciler_webhook_deliveries_total",
    f"Webhook deliveries handled, by outcome ({', '.join(DELIVERY_OUTCOMES)})", ["outcome"])
WEBHOOK_ATTEMPTS = Counter(
    "reconciler_webhook_attempts_total", "HTTP attempts to deliver a webhook, by result (ok or an error class)",
    ["result"])
WEBHOOK_DELIVERY_DURATION = Histogram(
    "reconciler_webhook_delivery_duration_seconds", "Time one delivery attempt took, until the answer or the error",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0))
WEBHOOK_ENDPOINTS_PAUSED = Gauge(
    "reconciler_webhook_endpoints_paused", "Endpoints whose circuit breaker currently pauses deliveries")


for _outcome in DELIVERY_OUTCOMES:  # the series exist from the start, at 0, so rate() has data at once
    WEBHOOK_DELIVERIES.labels(_outcome)
WEBHOOK_ATTEMPTS.labels("ok")
