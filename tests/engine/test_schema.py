"""The plain SQL files and the SQLAlchemy metadata describe the same schema; migrate is safe to repeat."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import IntegrityError

from reconciler.engine.db import make_engine
from reconciler.engine.migrate import applied_versions, available_migrations, migrate
from reconciler.engine.schema import metadata, schema_migrations


def _normalise_sql(clause: object) -> str:
    """Catalogues print predicates differently from how they were written; compare their substance."""
    sql = str(clause).lower().replace("::text", "")
    sql = re.sub(r"= any \(array\[(.*?)\]\)", r"in (\1)", sql)
    return re.sub(r"[\s()\"]", "", sql)


def describe(engine: Engine) -> dict:
    """Tables, columns (type as the database spells it, nullability), keys, constraints and indexes."""
    insp = inspect(engine)
    dialect = engine.dialect
    schema = {}
    for table in sorted(insp.get_table_names()):
        indexes = {}
        for index in insp.get_indexes(table):
            where = {k: v for k, v in index.get("dialect_options", {}).items() if k.endswith("_where")}
            indexes[index["name"]] = (tuple(index["column_names"]), bool(index["unique"]),
                                      _normalise_sql(next(iter(where.values()), "")))
        schema[table] = {
            "columns": {c["name"]: (c["type"].compile(dialect=dialect), c["nullable"])
                        for c in insp.get_columns(table)},
            "primary_key": tuple(insp.get_pk_constraint(table)["constrained_columns"]),
            "unique": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)),
            "foreign_keys": sorted((tuple(f["constrained_columns"]), f["referred_table"],
                                    tuple(f["referred_columns"])) for f in insp.get_foreign_keys(table)),
            "checks": sorted((c["name"], _normalise_sql(c["sqltext"])) for c in insp.get_check_constraints(table)),
            "indexes": indexes,
        }
    if dialect.name == "sqlite":  # what SQLite checks with triggers instead of constraints
        with engine.connect() as conn:
            schema["triggers"] = sorted(tuple(r) for r in conn.exec_driver_sql(
                "SELECT name, tbl_name, replace(replace(sql, char(10), ' '), '  ', ' ') "
                "FROM sqlite_master WHERE type = 'trigger'"))
    return schema


def test_sql_files_build_exactly_the_metadata_schema(new_database):
    from_files, from_metadata = make_engine(new_database()), make_engine(new_database())
    migrate(from_files)
    metadata.create_all(from_metadata)
    files, expected = describe(from_files), describe(from_metadata)
    assert sorted(files) == sorted(expected)
    for table in expected:
        assert files[table] == expected[table], table
    assert files["mtn_orders"]["indexes"]["mtn_orders_claim_idx"] == (
        ("next_attempt_at", "id"), False, "status='queued'")


@pytest.mark.parametrize("shop_order_id", ["", "   "])
def test_an_empty_shop_order_id_is_refused_by_the_schema_on_insert_and_update(db_url, shop_order_id):
    engine = make_engine(db_url)
    migrate(engine)
    insert = text("INSERT INTO mtn_orders (shop_order_id, recipient_phone, size_gb) VALUES (:id, '0241234567', 5)")
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert, {"id": shop_order_id})
    with engine.begin() as conn:
        conn.execute(insert, {"id": "A-1"})
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("UPDATE mtn_orders SET shop_order_id = :id"), {"id": shop_order_id})
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT shop_order_id FROM mtn_orders").scalars().all() == ["A-1"]


def test_empty_shop_order_ids_stored_before_the_check_get_a_findable_id(db_url):
    engine = make_engine(db_url)
    migrations = available_migrations(engine.dialect.name)
    before = migrations[:[m.name for m in migrations].index("input_checks")]
    with engine.begin() as conn:
        for statement in [s for m in before for s in m.statements()]:
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql("INSERT INTO mtn_orders (shop_order_id, recipient_phone, size_gb) "
                             "VALUES ('', '0241234567', 5)")
    migrate(engine)
    with engine.connect() as conn:
        row_id, shop_order_id = conn.exec_driver_sql("SELECT id, shop_order_id FROM mtn_orders").one()
    assert shop_order_id == f"empty-{row_id}"


def test_migrate_applies_what_is_pending_once(db_url):
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert applied_versions(conn) == set()
    assert [m.name for m in migrate(engine)] == ["initial", "mtn_flow", "coordination", "input_checks", "operator_actions",
                                                "partner_intake"]
    assert migrate(engine) == []
    with engine.connect() as conn:
        assert conn.execute(select(schema_migrations.c.version, schema_migrations.c.name)
                            .order_by(schema_migrations.c.version)).all() == [
            (1, "initial"), (2, "mtn_flow"), (3, "coordination"), (4, "input_checks"), (5, "operator_actions"),
            (8, "partner_intake")]


def test_a_schema_applied_by_hand_from_the_sql_file_is_recognised_and_upgraded(db_url):
    engine = make_engine(db_url)
    initial, *later = available_migrations(engine.dialect.name)
    with engine.begin() as conn:  # what a DBA does with psql or sqlite3
        for statement in initial.statements():
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql("INSERT INTO mtn_orders (shop_order_id, recipient_phone, size_gb) "
                             "VALUES ('before-upgrade', '0241234567', 5)")
    assert [m.name for m in migrate(engine)] == [m.name for m in later]
    assert migrate(engine) == []
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT shop_order_id, status FROM mtn_orders").all() == [
            ("before-upgrade", "queued")]


def test_pauses_of_version_2_carry_over_into_the_pauses_table(db_url):
    engine = make_engine(db_url)
    initial, mtn_flow, *later = available_migrations(engine.dialect.name)
    with engine.begin() as conn:
        for statement in initial.statements() + mtn_flow.statements():
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql("INSERT INTO provider_state (provider, paused, paused_reason, paused_until) "
                             "VALUES ('mtn', true, 'unauthorised', '2030-01-01 00:00:00')")
        conn.exec_driver_sql("INSERT INTO webhook_endpoints (url, consecutive_failures, paused_until) "
                             "VALUES ('http://shop.example/hook', 6, '2030-01-01 00:00:00')")
    migrate(engine)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT key, reason, consecutive_failures FROM pauses ORDER BY key").all()
    assert [tuple(r) for r in rows] == [("mtn", "unauthorised", 0), ("webhook:http://shop.example/hook", None, 6)]


CHECKOUT = Path(__file__).resolve().parents[2]


def test_a_plain_checkout_not_installed_finds_its_migrations(tmp_path):
    """Without site (-S) the editable install's .pth is not read: `reconciler` is the checkout's plain folder."""
    code = ("import json, reconciler\n"
            "from reconciler.engine.migrate import available_migrations\n"
            "print(json.dumps([reconciler.__file__] + [[m.version for m in available_migrations(d)]\n"
            "                  for d in ('sqlite', 'postgresql')]))")
    env = {"PYTHONPATH": os.pathsep.join([str(CHECKOUT), sysconfig.get_paths()["purelib"]])}
    run = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    where, sqlite_versions, postgres_versions = json.loads(run.stdout)
    assert Path(where) == CHECKOUT / "reconciler" / "__init__.py"
    on_disk = sorted(int(f.name[:3]) for f in (CHECKOUT / "sql" / "sqlite").glob("*.sql"))
    assert sqlite_versions == postgres_versions == on_disk and on_disk[:3] == [1, 2, 3]


def test_two_replicas_migrating_at_once_both_succeed(db_url):
    engines = [make_engine(db_url), make_engine(db_url)]
    results, errors = migrate_together(engines)
    assert errors == []
    every = len(available_migrations(engines[0].dialect.name))
    assert sorted(results) == [0, every]
    with engines[0].connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM schema_migrations")).scalar() == every


def test_replicas_starting_together_on_a_new_sqlite_file_both_get_it(tmp_path):
    # Switching a new file to WAL needs it to itself and does not always wait out busy_timeout: of two
    # replicas starting together, one used to fail with "database is locked" (1 start in 4). A race: 100 of them.
    for attempt in range(100):
        engines = [make_engine(f"sqlite:///{tmp_path / f'new-{attempt}.db'}") for _ in range(2)]
        _, errors = migrate_together(engines)
        with engines[0].connect() as conn:
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        for engine in engines:
            engine.dispose()
        assert (errors, mode) == ([], "wal"), f"attempt {attempt}"


def migrate_together(engines: list[Engine]) -> tuple[list[int], list[Exception]]:
    """Each engine migrates in a thread of its own, all starting at once as replicas may: how many migrations
    each applied, and what they raised."""
    start = threading.Barrier(len(engines))
    applied: list[int] = []
    errors: list[Exception] = []

    def replica(engine: Engine) -> None:
        start.wait()
        try:
            applied.append(len(migrate(engine)))
        except Exception as exc:  # surfaced by the caller's assertions
            errors.append(exc)

    threads = [threading.Thread(target=replica, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return applied, errors
