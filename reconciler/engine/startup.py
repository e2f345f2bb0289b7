"""Bring the schema up to date at start, waiting out a database that is not reachable yet."""
from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine

from reconciler.engine.daemon import MAX_BACKOFF_SECONDS, is_database_unavailable
from reconciler.engine.db import database_error_cause
from reconciler.engine.migrate import migrate

log = logging.getLogger(__name__)


def wait_for_schema(engine: Engine, stop: threading.Event) -> bool:
    """Migrate, retrying with backoff while the database is unreachable; False if stopped meanwhile."""
    delay = 1.0
    while not stop.is_set():
        try:
            for applied in migrate(engine):
                log.info("applied schema migration %03d_%s", applied.version, applied.name)
            return True
        except Exception as exc:
            if not is_database_unavailable(exc):
                raise
            log.warning("database unavailable at start: %s; retrying in %.0f s", database_error_cause(exc), delay)
            stop.wait(delay)
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)
    return False
