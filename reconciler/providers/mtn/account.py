"""The reseller account as the submit flow sees it: open or paused, and how much the balance covers.

The pause lives in coordination.pauses, so every replica pauses together. A pause ends with a probe by
one replica, not blindly: after a 401 the key must work again (one balance call), after a 402 the
balance must cover an order again; after a 429 the wait itself is the cure.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Iterable

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
MIN_BALANCE_RECHECK_SECONDS = 5.0


class MtnAccount:
    def __init__(self, engine: Engine, client: MtnClient, settings: MtnConfig, worker_id: str) -> None:
        self.engine = engine
        self.client = client
        self.settings = settings
        self.worker_id = worker_id
        self.pauses = Pauses(engine)

    def is_open(self, now: datetime) -> bool:
        """May orders be sent now? Ends a pause whose time is up if its probe (this replica's, if it takes
        the probe) passes."""
        state = self.pauses.get(PROVIDER)
        if state.paused and not state.holds(now) and self.pauses.take_probe(PROVIDER, self.worker_id, now):
            state = self._probe(state, now)
        return not self._show(state).paused

    def affordable(self, sizes_gb: Iterable[int], now: datetime) -> int:
        """How many of these orders, in this order, the balance covers; all when the balance is unknown."""
        sizes = list(sizes_gb)
        if self.settings.price_per_gb <= 0:
            return len(sizes)
        balance = self._balance(now)
        if balance is None:
            return len(sizes)  # unreadable now: a 402 will still stop us
        covered, spent = 0, Decimal(0)
        for size in sizes:
            spent += self._price(size)
            if spent > balance:
                break
            covered += 1
        if covered < len(sizes):
            self._pause(INSUFFICIENT_BALANCE, now, f"balance {balance} covers {covered} of {len(sizes)} orders")
        return covered

    def paused_until(self, now: datetime) -> datetime:
        """When the current pause ends (now when there is none)."""
        return self.pauses.get(PROVIDER).paused_until or now

    def refused(self, error: MtnUnauthorised | MtnInsufficientBalance | MtnRateLimited,
                now: datetime) -> Pause:
        """The reseller refused to take orders at all (401, 402, 429): pause the whole flow."""
        if isinstance(error, MtnUnauthorised):
            return self._pause(UNAUTHORISED, now, error.message)
        if isinstance(error, MtnInsufficientBalance):
            record_balance(self.engine, PROVIDER, None, now)
            return self._pause(INSUFFICIENT_BALANCE, now, error.message)
        return self._pause(RATE_LIMITED, now, error.message, error.retry_after_seconds)

    def _probe(self, state: Pause, now: datetime) -> Pause:
        if state.reason == RATE_LIMITED:
            return self.pauses.resume(PROVIDER, now)
        try:
            balance = self._fetch_balance(now)
        except MtnUnauthorised as exc:
            return self._pause(UNAUTHORISED, now, exc.message)
        except MtnError as exc:
            return self._pause(state.reason or UNAUTHORISED, now, f"probe failed: {exc.message}")
        if state.reason == INSUFFICIENT_BALANCE and balance < self._price(1):
            return self._pause(INSUFFICIENT_BALANCE, now, f"balance {balance} still too low")
        log.info("MTN flow resumed after %s", state.reason)
        return self.pauses.resume(PROVIDER, now)

    def _balance(self, now: datetime) -> Decimal | None:
        state = load_state(self.engine, PROVIDER)
        if state.balance_fresh(now, self.settings.balance_cache_seconds):
            return state.balance
        try:
            return self._fetch_balance(now)
        except MtnError as exc:
            log.warning("MTN balance unavailable: %s", exc.message)
            return None

    def _fetch_balance(self, now: datetime) -> Decimal:
        balance = self.client.balance()
        record_balance(self.engine, PROVIDER, balance, now)
        mtn_metrics.PROVIDER_BALANCE.labels(PROVIDER).set(float(balance))
        return balance

    def _pause(self, reason: str, now: datetime, why: str, seconds: float | None = None) -> Pause:
        if seconds is None:
            seconds = {UNAUTHORISED: self.settings.auth_pause_seconds,
                       RATE_LIMITED: self.settings.rate_limit_pause_seconds,
                       INSUFFICIENT_BALANCE: max(self.settings.balance_cache_seconds,
                                                 MIN_BALANCE_RECHECK_SECONDS)}[reason]
        log.warning("MTN flow paused for %.0fs (%s): %s", seconds, reason, why)
        return self._show(self.pauses.pause(PROVIDER, reason, now + timedelta(seconds=seconds), now, why))

    def _price(self, size_gb: int) -> Decimal:
        return Decimal(str(self.settings.price_per_gb)) * size_gb

    @staticmethod
    def _show(state: Pause) -> Pause:
        for reason in PAUSE_REASONS:
            metrics.PROVIDER_PAUSED.labels(PROVIDER, reason).set(int(state.paused and state.reason == reason))
        return state
