"""Fixtures: every database test runs on SQLite and on PostgreSQL, each in its own fresh database."""
from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from reconciler.engine.db import make_engine, normalise_url
from reconciler.engine.migrate import migrate

from tests.racing import Replica

# the `flow` fixture: the MTN flow against the fake reseller; `zoho_flow`: the Zoho flow against the fake Zoho
pytest_plugins = ("tests.providers.mtn.flow", "tests.providers.zoho.flow")

PG_ADMIN_URL = os.environ.get("RECONCILER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg_unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL test cannot run in CI: {reason}")
    pytest.skip(f"PostgreSQL unavailable: {reason}")


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine | None]:
    engine = create_engine(normalise_url(PG_ADMIN_URL), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:  # reported per test, so CI fails loudly rather than skipping
        engine.dispose()
        yield None
        return
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def new_database(request: pytest.FixtureRequest, tmp_path) -> Iterator[Callable[[], str]]:
    """Makes fresh, empty databases of this test's kind (dropped afterwards); returns their URLs."""
    created: list[str] = []
    admin = None
    if request.param == "postgresql":
        admin = request.getfixturevalue("pg_admin")
        if admin is None:
            _pg_unavailable(f"cannot connect to {PG_ADMIN_URL}")

    def make() -> str:
        name = f"reconciler_test_{uuid.uuid4().hex[:12]}"
        created.append(name)
        if admin is None:
            return f"sqlite:///{tmp_path / name}.db"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        return make_url(normalise_url(PG_ADMIN_URL)).set(database=name).render_as_string(hide_password=False)

    yield make
    if admin is not None:
        with admin.connect() as conn:
            for name in created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def db_url(new_database: Callable[[], str]) -> str:
    """The URL of a fresh, empty database."""
    return new_database()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated database."""
    engine = make_engine(db_url)
    migrate(engine)
    yield engine
    engine.dispose()


class FakeClock:
    """An injectable clock: tests move time forward instead of sleeping."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def replicas(db_url: str, engine) -> Iterator[list[Replica]]:
    """Six replicas of the daemon sharing one migrated database, for races: each its own engine (connection
    pool) and worker id."""
    engines = [make_engine(db_url) for _ in range(6)]
    yield [(e, f"replica-{i}") for i, e in enumerate(engines)]
    for e in engines:
        e.dispose()
