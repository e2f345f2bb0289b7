"""Metrics of the Zoho flow; the engine's outbox and job metrics cover the rest."""
from __future__ import annotations

from prometheus_client import Counter

ZOHO_SUBMISSIONS = Counter(
    "reconciler_zoho_submissions_total",
    "T2Mobile orders handled by the Zoho submit job, by result (completed; adopted: completed with the sales "
    "order an earlier attempt created; in_doubt, failed, rejected, retry, dead, deferred)", ["result"])
