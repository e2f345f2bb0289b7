"""The reseller account as the submit flow sees it: open or paused, and which orders the balance covers.

The pause lives in coordination.pauses, so every replica pauses together. A pause ends with a probe by
one replica, not blindly: after a 401 the key must work again (one balance call), after a 402 the
balance must cover the cheapest bundle again; after a 429 the wait itself is the cure. A balance reading
that works (a probe, or `reconciler balance`) ends a 401 pause at once, and a process just started (with
a new key, say) probes a 401 pause at once rather than waiting it out.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Mapping

from sqlalchemy import Engine

from reconciler.config import MtnConfig
from reconciler.coordination.pauses import Pause, Pauses
from reconciler.coordination.provider_state import load_state, record_balance
from reconciler.engine import metrics
from reconciler.providers.mtn import metrics as mtn_metrics
from reconciler.providers.mtn.client import (
    PROVIDER, MtnClient, MtnError, MtnInsufficientBalance, MtnRateLimited, MtnUnauthorised,
)

log = logging.getLogger(__name__)
UNAUTHORISED, INSUFFICIENT_BALANCE, RATE_LIMITED = "unauthorised", "insufficient_balance", "rate_limited"
PAUSE_REASONS = (UNAUTHORISED, INSUFFICIENT_BALANCE, RATE_LIMITED)
for _reason in PAUSE_REASONS:  # 0 from the start, so 'paused' alerts and graphs have a series before any pause
    metrics.PROVIDER_PAUSED.labels(PROVIDER, _reason)
MIN_BALANCE_RECHECK_SECONDS = 5.0


@dataclass(frozen=True)
class BalanceReading:
    balance: Decimal
    resumed: str | None  # the reason of the pause this reading ended, if it ended one


class MtnAccount:
    """One per submit job (it remembers, for this process, whether the balance was below the alert threshold
    and whether a 401 pause was probed since the start)."""

    def __init__(self, engine: Engine, client: MtnClient, settings: MtnConfig, worker_id: str) -> None:
        self.engine = engine
        self.client = client
        self.settings = settings
        self.worker_id = worker_id
        self.pauses = Pauses(engine)
        self.prices = {size: Decimal(str(price)) for size, price in settings.bundles.items()}
        self.cheapest = min(self.prices.values())
        self._fresh_start = True
        self._below_threshold = False
        mtn_metrics.BALANCE_ALERT_THRESHOLD.labels(PROVIDER).set(settings.balance_alert_threshold)

    def is_open(self, now: datetime) -> bool:
        """May orders be sent now? Ends a pause whose time is up if its probe (this replica's, if it takes
        the probe) passes; the first call of a process probes a 401 pause at once."""
        state = self.pauses.get(PROVIDER)
        early, self._fresh_start = self._fresh_start and state.reason == UNAUTHORISED, False
        if (state.paused and (early or not state.holds(now))
                and self.pauses.take_probe(PROVIDER, self.worker_id, now, early=early)):
            state = self._probe(state, now)
        return not self._show(state).paused

    def affordable(self, sizes_gb: Mapping[int, int], now: datetime) -> set[int]:
        """Which of these orders (id -> size, oldest first) the balance covers together, each at its own
        bundle's price: every one that fits, skipping those that do not. All when the balance is unknown; when
        it covers not even the cheapest bundle, the whole flow pauses until it does."""
        balance = self._balance(now)
        if balance is None:
            return set(sizes_gb)  # unreadable now: a 402 will still stop us
        covered, spent = set(), Decimal(0)
        for order_id, size in sizes_gb.items():
            if spent + self.prices[size] <= balance:
                covered.add(order_id)
                spent += self.prices[size]
        if balance < self.cheapest:
            self._pause(INSUFFICIENT_BALANCE, now, f"balance {balance} covers no bundle (the cheapest costs {self.cheapest})")
        return covered

    def balance_recheck_at(self, now: datetime) -> datetime:
        """When an order the balance does not cover is looked at again: after the next balance reading."""
        return now + timedelta(seconds=self._recheck_seconds())

    def refused(self, error: MtnUnauthorised | MtnInsufficientBalance | MtnRateLimited,
                now: datetime) -> Pause:
        """The reseller refused to take orders at all (401, 402, 429): pause the whole flow."""
        if isinstance(error, MtnUnauthorised):
            return self._pause(UNAUTHORISED, now, error.message)
        if isinstance(error, MtnInsufficientBalance):
            record_balance(self.engine, PROVIDER, None, now)
            return self._pause(INSUFFICIENT_BALANCE, now, error.message)
        return self._pause(RATE_LIMITED, now, error.message, error.retry_after_seconds)

    def read_balance(self, now: datetime) -> BalanceReading:
        """Fetch the balance and keep it for every replica. The key worked, so a 401 pause ends at once; a
        balance that covers the cheapest bundle ends a balance pause."""
        balance = self.client.balance()
        record_balance(self.engine, PROVIDER, balance, now)
        state = self.pauses.get(PROVIDER)
        cured = state.reason == UNAUTHORISED or (state.reason == INSUFFICIENT_BALANCE and balance >= self.cheapest)
        if state.paused and cured and not self.pauses.resume(PROVIDER, now, reason=state.reason).paused:
            log.info("MTN flow resumed after %s: the balance reads %s", state.reason, balance)
            return BalanceReading(balance, state.reason)
        return BalanceReading(balance, None)

    def _probe(self, state: Pause, now: datetime) -> Pause:
        if state.reason == RATE_LIMITED:
            return self.pauses.resume(PROVIDER, now)
        try:
            reading = self._fetch_balance(now)
        except MtnUnauthorised as exc:
            return self._pause(UNAUTHORISED, now, exc.message)
        except MtnError as exc:
            return self._pause(state.reason or UNAUTHORISED, now, f"probe failed: {exc.message}")
        if reading.resumed is None and state.reason == INSUFFICIENT_BALANCE:
            return self._pause(INSUFFICIENT_BALANCE, now, f"balance {reading.balance} still too low")
        return self.pauses.get(PROVIDER)

    def _balance(self, now: datetime) -> Decimal | None:
        state = load_state(self.engine, PROVIDER)
        if state.balance_fresh(now, self.settings.balance_cache_seconds):
            self._observe(state.balance)  # another replica's reading: exported here too
            return state.balance
        try:
            return self._fetch_balance(now).balance
        except MtnError as exc:
            log.warning("MTN balance unavailable: %s", exc.message)
            return None

    def _fetch_balance(self, now: datetime) -> BalanceReading:
        reading = self.read_balance(now)
        self._observe(reading.balance)
        return reading

    def _observe(self, balance: Decimal) -> None:
        """Export a reading; log once when it falls below the alert threshold, and not again before it recovers."""
        mtn_metrics.PROVIDER_BALANCE.labels(PROVIDER).set(float(balance))
        threshold = self.settings.balance_alert_threshold
        below = balance < Decimal(str(threshold))
        if below and not self._below_threshold:
            log.warning("MTN balance %s is below mtn.balance_alert_threshold %g: top up the reseller account",
                        balance, threshold)
        elif self._below_threshold and not below:
            log.info("MTN balance %s is back above mtn.balance_alert_threshold %g", balance, threshold)
        self._below_threshold = below

    def _recheck_seconds(self) -> float:
        return max(self.settings.balance_cache_seconds, MIN_BALANCE_RECHECK_SECONDS)

    def _pause(self, reason: str, now: datetime, why: str, seconds: float | None = None) -> Pause:
        if seconds is None:
            seconds = {UNAUTHORISED: self.settings.auth_pause_seconds,
                       RATE_LIMITED: self.settings.rate_limit_pause_seconds,
                       INSUFFICIENT_BALANCE: self._recheck_seconds()}[reason]
        log.warning("MTN flow paused for %.0fs (%s): %s", seconds, reason, why)
        return self._show(self.pauses.pause(PROVIDER, reason, now + timedelta(seconds=seconds), now, why))

    @staticmethod
    def _show(state: Pause) -> Pause:
        for reason in PAUSE_REASONS:
            metrics.PROVIDER_PAUSED.labels(PROVIDER, reason).set(int(state.paused and state.reason == reason))
        return state


def resume_by_hand(engine: Engine, by: str, now: datetime) -> Pause | None:
    """`reconciler resume mtn`: open the flow now whatever paused it, recorded with who did it. The balance
    reading is forgotten too, so a top-up counts from the next order on. The pause it ended, or None."""
    record_balance(engine, PROVIDER, None, now)
    return Pauses(engine).resume_by(PROVIDER, by, now)
