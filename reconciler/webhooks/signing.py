"""Webhook signatures: Standard Webhooks (what we send by default) and the plain `sha256=<hex>` HMAC header
(what the MTN reseller sends us, and what we send to endpoints that ask for it). The one HMAC helper."""
from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from standardwebhooks.webhooks import Webhook

STANDARD, SHA256 = "standard", "sha256"


def signature_headers(style: str, secrets: str, event_id: str, body: str, sent_at: datetime) -> dict[str, str]:
    """Headers for one attempt. `secrets` may hold two space-separated secrets while one is rotated out:
    Standard Webhooks then carries both signatures; the sha256 style signs with the first."""
    keys = secrets.split()
    if not keys:
        raise ValueError("no webhook secret configured")
    if style == STANDARD:
        signatures = " ".join(Webhook(key).sign(event_id, sent_at, body) for key in keys)
        return {"webhook-id": event_id, "webhook-timestamp": str(int(sent_at.timestamp())),
                "webhook-signature": signatures}
    if style == SHA256:
        return {"webhook-id": event_id, "X-Webhook-Signature": sha256_signature(keys[0], body.encode())}
    raise ValueError(f"unknown signature style {style!r}")


def sha256_signature(secret: str, body: bytes) -> str:
    """`sha256=<hex of HMAC-SHA256(secret, raw body)>`, the X-Webhook-Signature header value."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_sha256_signature(secret: str, body: bytes, header: str | None) -> bool:
    """Does `header` (`sha256=<hex>`, prefix optional) sign these raw bytes? Constant-time; a header that is
    not even ASCII is simply wrong, never an error."""
    if not secret or not header:
        return False
    given = header.strip().lower().removeprefix("sha256=")
    expected = sha256_signature(secret, body).removeprefix("sha256=")
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))
