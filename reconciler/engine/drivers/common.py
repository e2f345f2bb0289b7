"""What every driver's SQL shares: statuses written as literals, and the status_history insert."""
from __future__ import annotations

from datetime import datetime
from typing import Sequence

from sqlalchemy import Connection, insert, literal_column

from reconciler.engine.schema import IN_FLIGHT, QUEUED, status_history

# Statuses are written into the SQL as literals, never bound: a bound status cannot match the partial
# claim index when PostgreSQL plans a prepared statement generically.
QUEUED_SQL, IN_FLIGHT_SQL = literal_column(f"'{QUEUED}'"), literal_column(f"'{IN_FLIGHT}'")

Transition = tuple[int, str, str, str]  # row_id, from_status, to_status, cause


def record_history(conn: Connection, table: str, transitions: Sequence[Transition], worker: str,
                   now: datetime) -> None:
    """One multi-row insert into status_history, in the caller's transaction."""
    if transitions:
        conn.execute(insert(status_history), [
            {"table_name": table, "row_id": row_id, "from_status": from_status, "to_status": to_status,
             "cause": cause, "worker_id": worker, "created_at": now}
            for row_id, from_status, to_status, cause in transitions])
