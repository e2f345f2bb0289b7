"""What the benchmarks share: a migrated database of its own per case, removed afterwards; a fake provider in a
process of its own; and the line that says where the figures were taken (they mean nothing without it)."""
from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import platform
import sqlite3
import tempfile
import uuid
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

from reconciler.engine.db import make_engine, normalise_url
from reconciler.engine.migrate import migrate


@contextmanager
def fake_in_process(serve: Callable[..., None], *args: Any) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Runs `serve(pipe, *args)` in a process of its own, so the fake's work is not the measured process's.
    Yields (what serve sent first: where to reach it, its report, filled in when the block ends); serve stops
    when it receives "stop" and then sends its report."""
    spawn = multiprocessing.get_context("spawn")
    ours, theirs = spawn.Pipe()
    process = spawn.Process(target=serve, args=(theirs, *args), daemon=True)
    process.start()
    report: dict[str, Any] = {}
    try:
        yield ours.recv(), report
    finally:
        ours.send("stop")
        report.update(ours.recv())
        process.join(timeout=10)


def scratch_database(backend: str, pg_url: str, prefix: str) -> AbstractContextManager[str]:
    """The URL of a fresh migrated database: PostgreSQL <prefix>_<random> on `pg_url`, or a SQLite file."""
    return _postgres_database(pg_url, prefix) if backend == "postgresql" else _sqlite_database(prefix)


@contextmanager
def _sqlite_database(prefix: str) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix=f"{prefix}_") as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        _migrate(url)
        yield url


@contextmanager
def _postgres_database(server_url: str, prefix: str) -> Iterator[str]:
    """CREATE DATABASE through the `postgres` database, DROP it at the end."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(with_database(server_url, "postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        try:
            url = with_database(server_url, name)
            _migrate(url)
            yield url
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.dispose()


def _migrate(url: str) -> None:
    engine = make_engine(url)
    try:
        migrate(engine)
    finally:
        engine.dispose()


def analyze(engine: Engine) -> None:
    """Fresh planner statistics. PostgreSQL: VACUUM ANALYZE, so autovacuum does not wake up on the freshly
    loaded table in the middle of the measurement (it did, and added noise) and the table looks like a
    production table whose finished rows were vacuumed long ago."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


def with_database(server_url: str, database: str) -> str:
    return make_url(normalise_url(server_url)).set(database=database).render_as_string(hide_password=False)


def add_database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432",
                        help="PostgreSQL server (no database: one is created per case and dropped)")
    parser.add_argument("--skip-pg", action="store_true", help="SQLite only")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def machine(pg_url: str | None, *more_versions: str) -> str:
    """Date, CPU, cores, OS and the versions that matter."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = [f"Python {platform.python_version()}", f"SQLite {sqlite3.sqlite_version}", *more_versions]
    if pg_url:
        admin = create_engine(with_database(pg_url, "postgres"))
        with admin.connect() as conn:
            versions.append("PostgreSQL " + conn.exec_driver_sql("SHOW server_version").scalar().split()[0])
        admin.dispose()
    return (f"{datetime.date.today().isoformat()}, {cpu}, {os.cpu_count()} cores, {platform.system()}, "
            + ", ".join(versions))
