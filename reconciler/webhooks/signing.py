"""Signatures of outgoing webhooks: Standard Webhooks (the default) or a plain HMAC-SHA256 header."""
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
        digest = hmac.new(keys[0].encode(), body.encode(), hashlib.sha256).hexdigest()
        return {"webhook-id": event_id, "X-Webhook-Signature": f"sha256={digest}"}
    raise ValueError(f"unknown signature style {style!r}")
