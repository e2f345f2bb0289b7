"""The partner intake on a real listener (waitress, a socket on 127.0.0.1), as ZohoProvider will serve it."""
from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import requests
from sqlalchemy import Engine

from reconciler.config import Config, PartnerConfig, ZohoConfig
from reconciler.engine.clock import Clock
from reconciler.http.listener import HttpListener
from reconciler.providers.zoho.intake import partner_routes

KEY, ROTATED = "t2m-key-2f9c1e7a5b", "t2m-key-new-8d3b6c0f41"


def intake_config(**partner: Any) -> Config:
    """The Zoho flow configured (health needs it), two API keys (one being rotated in)."""
    settings = {"api_keys": f"{KEY} {ROTATED}", "webhook_url": "http://127.0.0.1:9/t2mobile", **partner}
    return Config(zoho=ZohoConfig(organization_id="60012345"), partner=PartnerConfig(**settings))


def serve(config: Config, engine: Engine, clock: Clock) -> HttpListener:
    return HttpListener("127.0.0.1", 0, config.receiver.max_body_bytes, partner_routes(config, engine, clock)).start()


def with_partner(config: Config, **changes: Any) -> Config:
    return dataclasses.replace(config, partner=dataclasses.replace(config.partner, **changes))


def order_body(order_id: str | None = None, **changes: Any) -> dict[str, Any]:
    return {"orderId": order_id or f"T2M-{uuid.uuid4().hex[:10]}", "productId": "ZOHO_CRM_STD",
            "customerId": "CUST-0042", "customerName": "Ada Okafor", "customerEmail": "ada.okafor@example.ng",
            "customerPhone": "+234 803 555 0142", "tenure": "12_MONTHS", **changes}


class Partner:
    """T2Mobile's side: one HTTP session against one listener."""

    def __init__(self, listener: HttpListener, api_key: str | None = KEY) -> None:
        self.base = f"http://127.0.0.1:{listener.port}"
        self.session = requests.Session()
        if api_key is not None:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.base + path, timeout=10, **kwargs)

    def order(self, body: Any, key: str | None = None, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if key is not None:
            headers["Idempotency-Key"] = f'"{key}"'
        return self.session.post(self.base + "/t2mobile/fulfilment", json=body, headers=headers, timeout=10, **kwargs)
