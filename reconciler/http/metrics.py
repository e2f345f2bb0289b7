"""Metrics of the calls to providers' APIs, recorded once in the shared HttpClient so every provider has them."""
from __future__ import annotations

from prometheus_client import Counter, Histogram

PROVIDER_REQUEST_DURATION = Histogram(
    "reconciler_provider_request_duration_seconds",
    "Time one call to a provider's API took, until the answer or the transport error, by operation (method and "
    "path, ids replaced by {id})", ["provider", "operation"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
PROVIDER_ERRORS = Counter(
    "reconciler_provider_errors_total",
    "Calls to a provider's API that got no answer or an HTTP error, by class: the transport error (connect_timeout, "
    "timeout, dns, connection) or http_429, http_4xx, http_5xx", ["provider", "class"])

ERROR_CLASSES = ("connect_timeout", "timeout", "dns", "connection", "http_429", "http_4xx", "http_5xx")


def error_class(status: int) -> str | None:
    """The class of an HTTP status for PROVIDER_ERRORS; None for an answer that is not an HTTP error."""
    if status == 429:
        return "http_429"
    if 400 <= status < 600:
        return f"http_{status // 100}xx"
    return None
