"""The outbox's hot-path SQL, one class per dialect: the statements differ, the meaning does not.

Both answer the same two questions in one transaction each:
- claim: mark up to `limit` due rows in_flight for `worker` and return them (oldest first);
- finalise: write outcomes for the rows `worker` still holds, and say which those were (the fence).
Every transition is also written to status_history in the same transaction.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping, Sequence

from sqlalchemy import Connection, Engine, RowMapping, Table, bindparam, insert, literal_column, select, text, update
from sqlalchemy.dialects import postgresql

from reconciler.engine.db import hot_path_engine, run_on_live_connection
from reconciler.engine.schema import IN_FLIGHT, QUEUED, UTCDateTime, status_history

# Statuses are written into the SQL as literals, never bound: a bound status cannot match the partial
# claim index when PostgreSQL plans a prepared statement generically.
QUEUED_SQL, IN_FLIGHT_SQL = literal_column(f"'{QUEUED}'"), literal_column(f"'{IN_FLIGHT}'")

Transition = tuple[int, str, str, str]  # row_id, from_status, to_status, cause

# With stale statistics the planner may think few rows are queued and sort every due row. The claim's
# sessions turn off sequential and bitmap scans, which keeps the claim an ordered walk of the partial index:
# O(batch), whatever the backlog. Only the claim's: other statements need those scans.
_CLAIM_SESSION = "-c enable_seqscan=off -c enable_bitmapscan=off"


def record_history(conn: Connection, table: str, transitions: Sequence[Transition], worker: str,
                   now: datetime) -> None:
    """One multi-row insert into status_history, in the caller's transaction."""
    if transitions:
        conn.execute(insert(status_history), [
            {"table_name": table, "row_id": row_id, "from_status": from_status, "to_status": to_status,
             "cause": cause, "worker_id": worker, "created_at": now}
            for row_id, from_status, to_status, cause in transitions])


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


class SQLiteQueries:
    """BEGIN IMMEDIATE (see db.py) holds the single write lock, so plain statements are race-free."""

    def __init__(self, engine: Engine, table: Table) -> None:
        self.engine = engine
        self.table = table

    def claim(self, limit: int, worker: str, now: datetime, until: datetime) -> list[RowMapping]:
        t = self.table
        due = (select(t.c.id)
               .where(t.c.status == QUEUED_SQL, t.c.next_attempt_at <= now)
               .order_by(t.c.next_attempt_at, t.c.id)
               .limit(limit))
        with self.engine.begin() as conn:
            rows = conn.execute(
                update(t).where(t.c.id.in_(due.scalar_subquery()))
                .values(status=IN_FLIGHT, locked_by=worker, locked_until=until, attempts=t.c.attempts + 1,
                        updated_at=now)
                .returning(*t.c)).mappings().all()
            record_history(conn, t.name, [(r["id"], QUEUED, IN_FLIGHT, "claimed") for r in rows], worker, now)
        return sorted(rows, key=lambda r: (r["next_attempt_at"], r["id"]))

    def finalise_alone(self, outcomes: Sequence[Any], fields: tuple[str, ...], worker: str,
                       now: datetime) -> list[int]:
        with self.engine.begin() as conn:
            return self.finalise(conn, outcomes, fields, worker, now)

    def finalise(self, conn: Connection, outcomes: Sequence[Any], fields: tuple[str, ...], worker: str,
                 now: datetime) -> list[int]:
        t = self.table
        owned = set(conn.scalars(select(t.c.id).where(
            t.c.id.in_([o.row_id for o in outcomes]), t.c.status == IN_FLIGHT_SQL, t.c.locked_by == worker)))
        mine = [o for o in outcomes if o.row_id in owned]
        if mine:
            values: Mapping[str, Any] = {"status": bindparam("b_status"), "locked_by": None, "locked_until": None,
                                         "updated_at": now, **{f: bindparam(f"b_{f}") for f in fields}}
            conn.execute(update(t).where(t.c.id == bindparam("b_id")).values(**values), [
                {"b_id": o.row_id, "b_status": o.status, **{f"b_{f}": o.fields[f] for f in fields}} for o in mine])
            record_history(conn, t.name, [(o.row_id, IN_FLIGHT, o.status, o.cause) for o in mine], worker, now)
        return [o.row_id for o in mine]


def queries_for(engine: Engine, table: Table) -> PostgresQueries | SQLiteQueries:
    return PostgresQueries(engine, table) if engine.dialect.name == "postgresql" else SQLiteQueries(engine, table)
