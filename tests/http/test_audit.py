"""The api_calls audit: written at once, or together in the background, and never lost on a failed write."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from reconciler.engine.db import make_engine
from reconciler.engine.migrate import migrate
from reconciler.engine.schema import api_calls
from reconciler.http.audit import ApiCall, AuditLog

CALL = ApiCall("mtn", "POST", "http://reseller/api/orders", '{"size_gb": 5}', 200, '{"success": true}', None, 12)


def audited(engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(api_calls))


def test_an_immediate_audit_writes_each_call_at_once(engine, clock):
    AuditLog(engine, clock)(CALL)
    assert audited(engine) == 1


def test_a_buffered_audit_writes_the_waiting_calls_together_on_flush(engine, clock):
    audit = AuditLog(engine, clock, max_delay_seconds=3600)  # the background writer will not run in this test
    for _ in range(3):
        audit(CALL)
    assert audited(engine) == 0
    audit.flush()
    assert audited(engine) == 3


def test_calls_whose_write_failed_wait_for_the_next_flush(db_url, clock):
    engine = make_engine(db_url)  # not migrated yet
    audit = AuditLog(engine, clock, max_delay_seconds=3600)
    audit(CALL)
    with pytest.raises(DBAPIError):
        audit.flush()  # no schema yet: the write fails
    migrate(engine)
    audit.flush()
    assert audited(engine) == 1
    engine.dispose()
