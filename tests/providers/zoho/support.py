"""Pointing a Zoho client at a fake Zoho."""
from __future__ import annotations

from typing import Any

from reconciler.config import ZohoConfig
from reconciler.providers.zoho.fake import FakeZoho


def config_for(fake: FakeZoho, **overrides: Any) -> ZohoConfig:
    """zoho.* settings for `fake`, with timeouts short enough for tests."""
    settings = {"accounts_url": fake.accounts_url, "api_url": fake.api_url, "organization_id": fake.organization_id,
                "client_id": fake.client_id, "client_secret": fake.client_secret,
                "refresh_token": fake.refresh_token, "connect_timeout_seconds": 2.0, "request_timeout_seconds": 5.0}
    return ZohoConfig(**{**settings, **overrides})
