"""The audit of what people did by hand that is not an outbox row's transition (those are in status_history):
a provider resumed, say. One row per action: who, what, on which key, and what it changed."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert

from reconciler.engine.schema import operator_actions


def record_operator_action(conn: Connection, actor: str, action: str, target: str, now: datetime,
                           detail: str | None = None) -> None:
    """Written in the caller's transaction, so the action and its record stand or fall together."""
    conn.execute(insert(operator_actions).values(actor=actor, action=action, target=target, detail=detail,
                                                 created_at=now))
