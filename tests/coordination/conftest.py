"""Replicas of the daemon sharing one database, for the coordination races."""
from __future__ import annotations

from typing import Iterator

import pytest

from reconciler.engine.db import make_engine

from tests.racing import Replica


@pytest.fixture
def replicas(db_url: str, engine) -> Iterator[list[Replica]]:
    """Six replicas: each its own engine (connection pool) and worker id, on the migrated database."""
    engines = [make_engine(db_url) for _ in range(6)]
    yield [(e, f"replica-{i}") for i, e in enumerate(engines)]
    for e in engines:
        e.dispose()
