"""Deliver queued webhook events: claim a batch, sign and POST each one, record the attempt and its outcome.

Each delivery is finalised as soon as its POST returns, so a crash can repeat at most the one in flight.
"""
from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta
from typing import Mapping

from reconciler.config import Config
from reconciler.coordination.rate_limits import RateLimit
from reconciler.engine.clock import utcnow
from reconciler.engine.events import NOTIFY, PARTNER
from reconciler.engine.job import JobContext
from reconciler.engine.logs import one_line
from reconciler.engine.outbox import Batch, Outbox, Outcome
from reconciler.engine.schema import DEAD, DELIVERED, webhook_deliveries
from reconciler.webhooks import metrics as webhook_metrics
from reconciler.webhooks.deliveries import log_attempt
from reconciler.webhooks.endpoints import EndpointState, disable, load_states, pause_key, record_result, take_probe
from reconciler.webhooks.sender import AttemptResult, WebhookSender, undeliverable
from reconciler.webhooks.signing import signature_headers

log = logging.getLogger(__name__)


class DeliverWebhooks:
    """The job; it keeps its HTTP sessions (keep-alive connections) between runs."""

    def __init__(self, config: Config) -> None:
        self.settings = config.webhooks
        self.signing = {PARTNER: (config.partner.signature, config.partner.webhook_secret, "partner.webhook_secret"),
                        NOTIFY: (config.notify.signature, config.notify.webhook_secret, "notify.webhook_secret")}
        self.sender = WebhookSender(self.settings.connect_timeout_seconds, self.settings.timeout_seconds)

    def run(self, ctx: JobContext) -> None:
        outbox = ctx.outboxes[webhook_deliveries.name]
        while not ctx.stop.is_set():
            reserve = self.settings.connect_timeout_seconds + self.settings.timeout_seconds
            with outbox.claim_batch(ctx.config.daemon.batch_size, ctx.stop, reserve_seconds=reserve) as batch:
                if not batch.rows:
                    return
                states = load_states(ctx.engine, {row["endpoint_url"] for row in batch.rows})
                for delivery in batch:
                    url = delivery["endpoint_url"]
                    states[url] = self.deliver(ctx, outbox, batch, delivery, states[url])

    def deliver(self, ctx: JobContext, outbox: Outbox, batch: Batch, delivery: Mapping,
                endpoint: EndpointState) -> EndpointState:
        """Send one delivery (or hold it back), finalise its outcome now; returns the endpoint's new state."""
        outcome, endpoint = self.attempt(ctx, outbox, delivery, endpoint)
        if batch.finish(outcome):
            webhook_metrics.WEBHOOK_DELIVERIES.labels(outcome_kind(outcome)).inc()
        return endpoint

    def attempt(self, ctx: JobContext, outbox: Outbox, delivery: Mapping,
                endpoint: EndpointState) -> tuple[Outcome, EndpointState]:
        now = ctx.clock()
        url = delivery["endpoint_url"]
        style, secrets, secret_key = self.signing[delivery["audience"]]
        never = undeliverable(url)
        if never is not None:
            return Outcome(delivery["id"], DEAD, "undeliverable_url", {"last_error": never}), endpoint
        if endpoint.disabled_at is not None:
            return Outcome(delivery["id"], DEAD, "endpoint_disabled",
                           {"last_error": "endpoint disabled after 410 Gone"}), endpoint
        if endpoint.paused(now):
            return outbox.defer(delivery, endpoint.paused_until, "endpoint_paused"), endpoint
        if endpoint.paused_until is not None and not take_probe(ctx.engine, url, ctx.worker_id, now):
            # The pause is over and another replica's delivery is probing the endpoint: wait for its answer.
            wait = now + timedelta(seconds=self.settings.poll_interval_seconds)
            return outbox.defer(delivery, wait, "endpoint_probing"), endpoint
        if not secrets:
            log.error("cannot sign %s: %s is not set; delivery held back", delivery["event_id"], secret_key)
            hold = now + timedelta(seconds=self.settings.breaker_pause_seconds)
            return outbox.defer(delivery, hold, "unsigned", f"{secret_key} is not set"), endpoint
        wait_seconds = RateLimit.per_second(ctx.engine, pause_key(url), self.settings.max_per_second,
                                            ctx.clock).try_acquire()
        if wait_seconds > 0:
            return outbox.defer(delivery, now + timedelta(seconds=wait_seconds), "endpoint_rate_limited"), endpoint

        body = delivery["payload"]
        headers = signature_headers(style, secrets, delivery["event_id"], body, utcnow())  # the real send time
        result = self.sender.send(url, body.encode(), headers)
        self._log(ctx, delivery, result, now)
        if result.delivered:
            endpoint = self._record(ctx, url, True, now)
            outcome = Outcome(delivery["id"], DELIVERED, "delivered", {"delivered_at": now, "last_error": None})
        elif result.error_class == "gone":
            endpoint = disable(ctx.engine, url, f"410 Gone at {now.isoformat()}", now)
            outcome = Outcome(delivery["id"], DEAD, "endpoint_gone", {"last_error": "410 Gone: endpoint disabled"})
        else:
            error = describe(result)
            probing = endpoint.breaker_open(self.settings.breaker_failures)
            if result.error_class != "rate_limited":  # a 429 says busy, not broken
                endpoint = self._record(ctx, url, False, now)
            if probing and endpoint.paused(now):
                # The endpoint is down, not this event: wait for the next probe, keep the retry budget.
                outcome = outbox.defer(delivery, endpoint.paused_until, "probe_failed", error)
            else:
                outcome = outbox.retry(delivery, error, delay_seconds=result.retry_after_seconds)
        return dataclasses.replace(outcome, fields={**outcome.fields, "last_status_code": result.status_code}), endpoint

    def _record(self, ctx: JobContext, url: str, delivered: bool, now: datetime) -> EndpointState:
        return record_result(ctx.engine, url, delivered, now, self.settings.breaker_failures,
                             self.settings.breaker_pause_seconds)

    @staticmethod
    def _log(ctx: JobContext, delivery: Mapping, result: AttemptResult, now: datetime) -> None:
        webhook_metrics.WEBHOOK_ATTEMPTS.labels(result.error_class or "ok").inc()
        webhook_metrics.WEBHOOK_DELIVERY_DURATION.observe(result.latency_ms / 1000)
        log_attempt(ctx.engine, delivery_id=delivery["id"], event_id=delivery["event_id"],
                    attempt=delivery["attempts"], endpoint_url=delivery["endpoint_url"],
                    status_code=result.status_code, latency_ms=result.latency_ms, error_class=result.error_class,
                    response_excerpt=result.response_excerpt, worker_id=ctx.worker_id, attempted_at=now)


def outcome_kind(outcome: Outcome) -> str:
    if outcome.status in (DELIVERED, DEAD):
        return outcome.status
    return "retry" if outcome.cause == "retry" else "deferred"


def describe(result: AttemptResult) -> str:
    if result.status_code is None:
        return result.error_class or "error"
    excerpt = one_line(result.response_excerpt, 200)
    return f"HTTP {result.status_code}" + (f": {excerpt}" if excerpt else "")
