"""Provider clients as the daemon and the CLI use them: built from the config, auditing every call."""
from __future__ import annotations

from sqlalchemy import Engine

from reconciler.http.audit import AuditLog
from reconciler.engine.clock import Clock, utcnow
from reconciler.config import Config
from reconciler.providers.mtn.client import MtnClient


def mtn_client(config: Config, engine: Engine, clock: Clock = utcnow, audit: AuditLog | None = None) -> MtnClient:
    """`audit`: where calls are recorded; by default each is written at once."""
    settings = config.mtn
    return MtnClient(settings.base_url, settings.api_key, settings.request_timeout_seconds,
                     settings.connect_timeout_seconds, audit=audit or AuditLog(engine, clock))
