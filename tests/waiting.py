"""Waiting on what runs on its own clock (another process, a real Prometheus): poll with a deadline."""
from __future__ import annotations

import time
from typing import Callable

import pytest


def wait_for(what: str, check: Callable[[], bool], seconds: float = 120, detail: Callable[[], str] = str) -> None:
    """Poll `check` until it holds, failing after `seconds` (with `detail()`): scrapes and settlements happen on
    their own clock."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; {detail()}")
        time.sleep(0.2)
