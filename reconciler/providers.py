"""Provider clients as the daemon and the CLI use them: built from the config, auditing every call."""
from __future__ import annotations

from sqlalchemy import Engine

from reconciler.api_audit import audit_to
from reconciler.clock import Clock, utcnow
from reconciler.config import Config
from reconciler.mtn_client import MtnClient


def mtn_client(config: Config, engine: Engine, clock: Clock = utcnow) -> MtnClient:
    settings = config.mtn
    return MtnClient(settings.base_url, settings.api_key, settings.request_timeout_seconds,
                     settings.connect_timeout_seconds, audit=audit_to(engine, clock))
