"""Replicas acting at the same moment: each call in its own thread, all released together by a barrier."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from sqlalchemy import Engine

T = TypeVar("T")
Replica = tuple[Engine, str]  # a replica's own engine (connection pool) and its worker id


def together(*calls: Callable[[], T]) -> list[T]:
    """Runs the calls at once and returns their results in order."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T:
        barrier.wait(10)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def race(replicas: list[Replica], attempt: Callable[[Engine, str], bool]) -> list[str]:
    """Every replica attempts at the same moment; returns the workers that succeeded."""
    won = together(*(lambda e=engine, w=worker: attempt(e, w) for engine, worker in replicas))
    return [worker for (_, worker), ok in zip(replicas, won) if ok]
