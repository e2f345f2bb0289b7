"""`reconciler db migrate`: apply the pending sql/<dialect>/NNN_*.sql files, each in one transaction.

Two replicas may migrate at once: the driver makes them take turns (PostgreSQL: an advisory lock; SQLite:
its write lock); the second finds the versions recorded and does nothing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, select

from reconciler.engine.drivers import driver_for
from reconciler.engine.schema import schema_migrations

_FILE_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """Split on ';' at line ends; the files hold no procedural blocks, so this is exact."""
        lines = [line for line in self.sql.splitlines() if not line.lstrip().startswith("--")]
        return [s.strip() for s in re.split(r";\s*$", "\n".join(lines), flags=re.M) if s.strip()]


def sql_folder() -> Traversable:
    """Installed, the SQL files ship as the package `reconciler.sql`; a plain checkout (tests run without
    installing) has them in the top-level sql/ beside reconciler/, which setup.cfg maps to that package."""
    try:
        return resources.files("reconciler.sql")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "sql"


def available_migrations(dialect_name: str) -> list[Migration]:
    folder = sql_folder() / driver_for(dialect_name).sql_folder
    found = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def applied_versions(conn: Connection) -> set[int]:
    if not inspect(conn).has_table(schema_migrations.name):
        return set()
    return set(conn.scalars(select(schema_migrations.c.version)))


def schema_problem(engine: Engine) -> str | None:
    """Why this database cannot be used by this reconciler yet (migrations not applied), or None when its schema
    is current. Raises the driver's error when the database cannot be reached at all."""
    with engine.connect() as conn:
        done = applied_versions(conn)
    pending = [m for m in available_migrations(engine.dialect.name) if m.version not in done]
    if not pending:
        return None
    names = ", ".join(f"{m.version:03d}_{m.name}" for m in pending)
    state = "has no reconciler schema" if not done else f"lacks migrations {names}"
    return f"the database {state}: run `reconciler db migrate`"


def migrate(engine: Engine) -> list[Migration]:
    """Apply what is pending; return what this call applied (empty when up to date)."""
    applied: list[Migration] = []
    with engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE already holds the write lock
        driver_for(engine).lock_for_migration(conn)
        schema_migrations.create(conn, checkfirst=True)
        done = applied_versions(conn)
        for migration in available_migrations(engine.dialect.name):
            if migration.version in done:
                continue
            for statement in migration.statements():
                conn.exec_driver_sql(statement)
            if migration.version not in applied_versions(conn):
                raise RuntimeError(f"sql file {migration.version:03d}_{migration.name}.sql did not record its version")
            applied.append(migration)
    return applied

