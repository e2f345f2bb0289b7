"""The PostgreSQL driver: engines, and the outbox's hot path in one statement per claim and per finalise group
(CTEs carry the rows into status_history), on an autocommit pool of its own."""
from __future__ import annotations

import threading
from datetime import datetime
from typing import Any, Callable, Sequence, TypeVar
from weakref import WeakKeyDictionary

import psycopg
from sqlalchemy import Connection, Engine, RowMapping, Table, bindparam, create_engine, event, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import Insert
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from reconciler.engine.drivers.common import IN_FLIGHT_SQL
from reconciler.engine.schema import IN_FLIGHT, QUEUED, UTCDateTime, status_history

T = TypeVar("T")
MIGRATION_LOCK_ID = 7_231_604_112  # arbitrary, constant: the advisory lock all replicas agree on

# With stale statistics the planner may think few rows are queued and sort every due row. The claim's
# sessions turn off sequential and bitmap scans, which keeps the claim an ordered walk of the partial index:
# O(batch), whatever the backlog. Only the claim's: other statements need those scans.
_CLAIM_SESSION = "-c enable_seqscan=off -c enable_bitmapscan=off"


class PostgresDriver:
    dialect = "postgresql"
    sql_folder = "postgres"

    def create_engine(self, url: URL, pool_size: int) -> Engine:
        return create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size)

    def outbox_queries(self, engine: Engine, table: Table) -> "PostgresQueries":
        return PostgresQueries(engine, table)

    def insert_ignoring_conflicts(self, table: Table, conflict_columns: Sequence[str],
                                  where: str | None = None) -> Insert:
        return postgresql.insert(table).on_conflict_do_nothing(
            index_elements=list(conflict_columns), index_where=text(where) if where is not None else None)

    def lock_for_migration(self, conn: Connection) -> None:
        """Replicas migrating at once take turns; the lock ends with the transaction."""
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})

    def write_alone(self, engine: Engine, sql: str, parameters: Any) -> tuple | None:
        """One round trip: autocommit on the hot pool, no ping; a reply lost with its connection is run again."""
        return execute_on_live_connection(hot_path_engine(engine), sql, parameters)


# Connections kept open (made on demand): one per HTTP handler thread, so a webhook never waits for a new
# connection, which costs more than its insert.
HOT_POOL_SIZE = 16
_hot_path_engines: WeakKeyDictionary[Engine, dict[str, Engine]] = WeakKeyDictionary()
_hot_path_engines_lock = threading.Lock()


def hot_path_engine(engine: Engine, options: str = "") -> Engine:
    """PostgreSQL: a pool for the outbox's one-statement claim and finalise, kept apart from `engine`'s pool:
    autocommit, so each statement is one round trip, no ping (see run_on_live_connection) and the libpq
    session `options` the statement needs. One per `engine` and `options`, disposed with `engine`."""
    with _hot_path_engines_lock:
        engines = _hot_path_engines.setdefault(engine, {})
        if options not in engines:
            session = " ".join(filter(None, [engine.url.query.get("options"), options]))
            hot = create_engine(engine.url.update_query_dict({"options": session}), isolation_level="AUTOCOMMIT",
                                pool_size=HOT_POOL_SIZE)
            event.listen(engine, "engine_disposed", lambda _engine: hot.dispose())
            engines[options] = hot
        return engines[options]


def run_on_live_connection(engine: Engine, work: Callable[[Connection, bool], T]) -> T:
    """Run work(connection, again=False) on a pool that does not ping. If the server had dropped the
    connection (a restart, an idle timeout), the pool drops its other old connections too and work runs
    once more, with again=True: the first run may have committed before its reply was lost."""
    try:
        with engine.connect() as conn:
            return work(conn, False)
    except DBAPIError as error:
        if not error.connection_invalidated:
            raise
    with engine.connect() as conn:
        return work(conn, True)


def execute_on_live_connection(engine: Engine, sql: str, parameters: dict[str, Any]) -> tuple | None:
    """run_on_live_connection for one statement of driver SQL, run on psycopg's own prepared cursor (for a
    statement run per request, where SQLAlchemy's execution layer cost more CPU than the statement); its
    first row. Errors are raised as SQLAlchemy's."""
    try:
        return _execute(engine, sql, parameters)
    except DBAPIError as error:
        if not error.connection_invalidated:
            raise
    return _execute(engine, sql, parameters)


def _execute(engine: Engine, sql: str, parameters: dict[str, Any]) -> tuple | None:
    try:
        raw = engine.raw_connection()
    except psycopg.Error as error:  # the server is down or refuses us
        raise DBAPIError.instance(None, None, error, psycopg.Error, dialect=engine.dialect) from error
    try:
        return raw.driver_connection.execute(sql, parameters, prepare=True).fetchone()
    except psycopg.Error as error:
        dropped = engine.dialect.is_disconnect(error, raw.driver_connection, None)
        if dropped:  # the server restarted or cut us off: the pool's other connections went with this one
            raw.invalidate(error)
            engine.dispose(close=False)
        raise DBAPIError.instance(sql, parameters, error, psycopg.Error, connection_invalidated=dropped,
                                  dialect=engine.dialect) from error
    finally:
        raw.close()


class PostgresQueries:
    """One statement per claim and per finalise group: CTEs carry the rows into status_history."""

    def __init__(self, engine: Engine, table: Table) -> None:
        self.table = table
        self._claims = hot_path_engine(engine, _CLAIM_SESSION)
        self._finalises = hot_path_engine(engine)
        name = table.name
        self._claim = text(f"""
            WITH due AS (
                SELECT id FROM {name}
                WHERE status = '{QUEUED}' AND next_attempt_at <= :now
                ORDER BY next_attempt_at, id
                LIMIT :limit
                FOR UPDATE SKIP LOCKED
            ), claimed AS (
                UPDATE {name} SET status = '{IN_FLIGHT}', locked_by = :worker, locked_until = :until,
                                  attempts = {name}.attempts + 1, updated_at = :now
                FROM due WHERE {name}.id = due.id
                RETURNING {name}.*
            ), history AS (
                INSERT INTO status_history (table_name, row_id, from_status, to_status, cause, worker_id, created_at)
                SELECT '{name}', id, '{QUEUED}', '{IN_FLIGHT}', 'claimed', :worker, :now FROM claimed
            )
            SELECT * FROM claimed ORDER BY next_attempt_at, id
        """).bindparams(bindparam("now", type_=UTCDateTime), bindparam("until", type_=UTCDateTime)
                        ).columns(*table.c)
        self._finalise_by_fields: dict[tuple[str, ...], Any] = {}

    def claim(self, limit: int, worker: str, now: datetime, until: datetime) -> list[RowMapping]:
        # A claim run twice because its first reply was lost leaves the first one's rows to the rescuer.
        params = {"now": now, "until": until, "limit": limit, "worker": worker}
        return run_on_live_connection(
            self._claims, lambda conn, _again: conn.execute(self._claim, params).mappings().all())

    def finalise_alone(self, outcomes: Sequence[Any], fields: tuple[str, ...], worker: str,
                       now: datetime) -> list[int]:
        """finalise() as a transaction of its own: one statement in autocommit, one round trip."""
        def write(conn: Connection, again: bool) -> list[int]:
            owned = self.finalise(conn, outcomes, fields, worker, now)
            if again:  # rows the lost first run wrote are no longer in flight, but their history is ours
                owned += self._written(conn, {o.row_id for o in outcomes} - set(owned), worker, now)
            return owned
        return run_on_live_connection(self._finalises, write)

    def _written(self, conn: Connection, row_ids: set[int], worker: str, now: datetime) -> list[int]:
        h = status_history
        return conn.execute(select(h.c.row_id).where(
            h.c.table_name == self.table.name, h.c.row_id.in_(row_ids), h.c.from_status == IN_FLIGHT_SQL,
            h.c.worker_id == worker, h.c.created_at == now)).scalars().all()

    def finalise(self, conn: Connection, outcomes: Sequence[Any], fields: tuple[str, ...], worker: str,
                 now: datetime) -> list[int]:
        """Outcomes sharing the same `fields`, as arrays unnested into one fenced UPDATE."""
        if fields not in self._finalise_by_fields:
            self._finalise_by_fields[fields] = self._build_finalise(fields)
        statement = self._finalise_by_fields[fields]
        params: dict[str, Any] = {
            "ids": [o.row_id for o in outcomes], "statuses": [o.status for o in outcomes],
            "causes": [o.cause for o in outcomes], "worker": worker, "now": now}
        for i, name in enumerate(fields):
            process = self.table.c[name].type.bind_processor(postgresql.dialect())
            params[f"f{i}"] = [process(o.fields[name]) if process else o.fields[name] for o in outcomes]
        return conn.execute(statement, params).scalars().all()

    def _build_finalise(self, fields: tuple[str, ...]):
        name = self.table.name
        dialect = postgresql.dialect()
        arrays = "".join(f", CAST(:f{i} AS {self.table.c[f].type.compile(dialect=dialect)}[])"
                         for i, f in enumerate(fields))
        columns = "".join(f", {f}" for f in fields)
        sets = "".join(f", {f} = outcome.{f}" for f in fields)
        return text(f"""
            WITH outcome AS (
                SELECT * FROM unnest(CAST(:ids AS BIGINT[]), CAST(:statuses AS TEXT[]), CAST(:causes AS TEXT[]){arrays})
                    AS o(id, status, cause{columns})
            ), done AS (
                UPDATE {name} SET status = outcome.status, locked_by = NULL, locked_until = NULL,
                                  updated_at = :now{sets}
                FROM outcome
                WHERE {name}.id = outcome.id AND {name}.status = '{IN_FLIGHT}' AND {name}.locked_by = :worker
                RETURNING {name}.id, outcome.status, outcome.cause
            ), history AS (
                INSERT INTO status_history (table_name, row_id, from_status, to_status, cause, worker_id, created_at)
                SELECT '{name}', id, '{IN_FLIGHT}', status, cause, :worker, :now FROM done
            )
            SELECT id FROM done
        """).bindparams(bindparam("now", type_=UTCDateTime))
