"""Logging: text or one JSON object per line for every logger, and a failure that repeats while a dependency is
down (the audit writer, a job) logged once with its cause, then as a count, never once per attempt."""
from __future__ import annotations

import contextlib
import io
import json
import logging
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from reconciler.config import Config
from reconciler.engine.daemon import JobRunner
from reconciler.engine.db import normalise_url
from reconciler.engine.job import Job
from reconciler.engine.logs import RepeatedFailure, configure_logging, mask_email, mask_personal, mask_phone
from reconciler.engine.schema import api_calls
from reconciler.http.audit import ApiCall, AuditLog

from tests.conftest import PG_ADMIN_URL
from tests.factories import job_context

CALL = ApiCall("mtn", "POST", "http://reseller/api/orders", '{"size_gb": 5}', 200, '{"success": true}', None, 12)


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, threading.excepthook, logging.getLogger("sqlalchemy").level)
    yield
    root.handlers[:], level, threading.excepthook, sqlalchemy_level = saved
    root.setLevel(level)
    logging.getLogger("sqlalchemy").setLevel(sqlalchemy_level)
    logging.captureWarnings(False)


def test_json_format_is_one_object_per_line_for_every_logger(restored_logging) -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    logging.getLogger("reconciler.providers.mtn.lifecycle").info("MTN order %s completed", "A-1",
                                                                 extra={"order_ref": "A-1"})
    try:
        raise ValueError("bad\nrequest")
    except ValueError:
        logging.getLogger("waitress").exception("Exception while serving /api/webhook/mtn")
    crashing = threading.Thread(target=lambda: 1 / 0, name="crashing")
    crashing.start()
    crashing.join()
    logging.getLogger("reconciler").debug("below the level")

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["level"], r["logger"], r["message"]) for r in lines] == [
        ("INFO", "reconciler.providers.mtn.lifecycle", "MTN order A-1 completed"),
        ("ERROR", "waitress", "Exception while serving /api/webhook/mtn"),
        ("ERROR", "reconciler.crash", "uncaught exception in thread crashing")]
    assert lines[0]["order_ref"] == "A-1" and lines[0]["time"].endswith("+00:00")
    assert "ValueError: bad" in lines[1]["exc_info"] and "ZeroDivisionError" in lines[2]["exc_info"]


def test_text_format_is_one_line_per_event(restored_logging) -> None:
    out = io.StringIO()
    configure_logging("WARNING", "text", stream=out)
    logging.getLogger("reconciler.x").warning("one %s", "line")
    logging.getLogger("reconciler.x").info("not shown")
    assert out.getvalue().endswith(" WARNING reconciler.x: one line\n") and out.getvalue().count("\n") == 1


def test_a_repeating_failure_is_logged_once_then_as_a_count_then_its_recovery(caplog) -> None:
    caplog.set_level(logging.INFO)
    now = [0.0]
    failure = RepeatedFailure(logging.getLogger("t"), "writing", remind_every_seconds=60, monotonic=lambda: now[0])
    for _ in range(100):  # a poll every 50 ms for 5 s
        failure.failed(ConnectionError("refused"))
        now[0] += 0.05
    assert [r.getMessage() for r in caplog.records] == ["writing failed: ConnectionError: refused"]
    now[0] = 61
    failure.failed(ConnectionError("refused"))
    failure.failed(TimeoutError("slow"))  # another cause is news
    failure.succeeded()
    failure.succeeded()
    assert [r.getMessage() for r in caplog.records][1:] == [
        "writing still failing: 100 more times in the last 61 s: ConnectionError: refused",
        "writing failed: TimeoutError: slow",
        "writing works again after 102 failures in 61 s (last: TimeoutError: slow)"]


@contextlib.contextmanager
def database_away(db_url: str) -> Iterator[None]:
    """The database goes away (a SQLite file replaced by a directory, a PostgreSQL database renamed) and comes
    back on exit."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database)
        kept = path.with_name(path.name + ".away")
        path.rename(kept)
        path.mkdir()
        try:
            yield
        finally:
            path.rmdir()
            kept.rename(path)
        return
    admin = create_engine(normalise_url(PG_ADMIN_URL), isolation_level="AUTOCOMMIT")

    def rename(old: str, new: str) -> None:
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": old})
            conn.execute(text(f'ALTER DATABASE "{old}" RENAME TO "{new}"'))

    rename(url.database, url.database + "_away")
    try:
        yield
    finally:
        rename(url.database + "_away", url.database)
        admin.dispose()


def test_the_audit_writer_logs_an_outage_once_without_a_traceback_and_its_end(engine, db_url, clock, caplog) -> None:
    caplog.set_level(logging.INFO)
    audit = AuditLog(engine, clock, max_delay_seconds=3600)  # its own thread will not write during the test
    audit(CALL)
    engine.dispose()
    with database_away(db_url):
        for _ in range(20):
            audit.write_waiting()
        lines = [r for r in caplog.records if r.name == "reconciler.http.audit"]
        assert len(lines) == 1 and lines[0].levelno == logging.WARNING and lines[0].exc_info is None
        assert lines[0].getMessage().startswith("writing the api_calls audit failed: OperationalError: ")
        assert "\n" not in lines[0].getMessage()
    engine.dispose()
    audit.write_waiting()
    lines = [r.getMessage() for r in caplog.records if r.name == "reconciler.http.audit"]
    assert len(lines) == 2 and lines[1].startswith("writing the api_calls audit works again after 20 failures")
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(api_calls)) == 1


def test_a_job_logs_a_database_outage_once_and_its_end(engine, db_url, clock, caplog) -> None:
    caplog.set_level(logging.INFO)
    now = [0.0]
    runner = JobRunner(Job("count_calls", 1.0, lambda ctx: ctx.engine.connect().close()),
                       job_context(engine, Config(), clock), monotonic=lambda: now[0])
    engine.dispose()
    with database_away(db_url):
        for _ in range(10):
            runner.run_once()
            now[0] = runner.not_before  # as soon as the backoff allows
        assert runner.backoff_seconds == 60
        lines = [r for r in caplog.records if r.name == "reconciler.engine.daemon"]
        assert len(lines) == 1 and lines[0].exc_info is None
        assert lines[0].getMessage().startswith("job count_calls failed: OperationalError: ")
    engine.dispose()
    runner.run_once()
    lines = [r.getMessage() for r in caplog.records if r.name == "reconciler.engine.daemon"]
    assert len(lines) == 2 and lines[1].startswith("job count_calls works again after 10 failures")


def test_a_job_failing_on_a_bug_logs_its_traceback_once(engine, clock, caplog) -> None:
    def broken(ctx) -> None:
        raise KeyError("status")

    runner = JobRunner(Job("broken", 1.0, broken), job_context(engine, Config(), clock))
    for _ in range(5):
        runner.run_once()
    [line] = [r for r in caplog.records if r.name == "reconciler.engine.daemon"]
    assert line.exc_info is not None and line.getMessage() == "job broken failed: KeyError: 'status'"


def test_reconciler_run_logs_one_json_object_per_line(tmp_path) -> None:
    config = tmp_path / "config.yaml"  # the format is the database's business in no way: SQLite alone
    config.write_text(f"database:\n  url: sqlite:///{tmp_path / 'run.db'}\nadmin:\n  port: 0\nreceiver:\n  port: 0\n"
                      "daemon:\n  log_format: json\n")
    daemon = subprocess.Popen([sys.executable, "-m", "reconciler", "--config", str(config), "run"],
                              stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in daemon.stderr:  # until the loop has started: its own announcement, not a fixed time
            lines.append(line)
            if "started with jobs" in line:
                break
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        lines += daemon.stderr.read().splitlines()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    records = [json.loads(line) for line in lines]
    messages = [r["message"] for r in records]
    assert any(m.startswith("admin listener on") for m in messages) and "stopped cleanly" in messages[-1]
    assert all(set(r) >= {"time", "level", "logger", "message"} for r in records)


def test_phones_are_masked_for_logs() -> None:
    assert mask_phone("0241234567") == "024****567"
    assert "1234" not in mask_phone("0241234567")
    assert mask_phone("123") == "***"


@pytest.mark.parametrize("email, masked", [
    ("ada.lovelace@example.com", "a***@example.com"), ("x@y.io", "x***@y.io"), ("", "***"), ("not-an-email", "***"),
    (None, "***")])
def test_emails_are_masked_for_logs(email, masked) -> None:
    assert mask_email(email) == masked


def test_a_provider_message_quoting_a_customer_is_masked() -> None:
    said = "Contact ada.lovelace@example.com (phone +234 803 123 4567) already exists"
    masked = mask_personal(said)
    assert masked == "Contact a***@example.com (phone +23***********567) already exists"
    assert "lovelace" not in masked and "123 4567" not in masked
