"""Zoho's OAuth refresh-token grant against `zoho.accounts_url` (the organisation's data centre), and the
redaction that keeps its secrets out of the api_calls audit.

Quirks handled: a refused refresh token answers HTTP 200 with `{"error":"invalid_code"}`; too many token
requests answer `Access Denied` (with 200 or 400). Both pause the flow (pause key "zoho", reason
"unauthorised", for `zoho.auth_pause_seconds`) with one log line; while that pause holds no replica asks the
accounts server again, so a bad refresh token never becomes a storm of token requests (Zoho allows 10 per 10
minutes, and keeps only the 10 newest access tokens valid).
"""
from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import replace
from datetime import timedelta
from typing import Callable
from urllib.parse import urlencode

from reconciler.config import ZohoConfig
from reconciler.coordination.pauses import Pauses
from reconciler.coordination.tokens import IssuedToken
from reconciler.engine.clock import Clock
from reconciler.engine.logs import one_line
from reconciler.engine.story import redact_url
from reconciler.http.audit import ApiCall
from reconciler.http.client import HttpClient, TransportError
from reconciler.providers.zoho.errors import ZohoAuthFailed, ZohoUnavailable
from reconciler.providers.zoho.metrics import TOKEN_EXPIRY, TOKEN_REFRESHES

log = logging.getLogger(__name__)

PROVIDER = "zoho"
PAUSE_KEY = "zoho"
UNAUTHORISED = "unauthorised"
TOKEN_PATH = "/oauth/v2/token"
SECRETS = ("access_token", "refresh_token", "client_secret")
_SECRET_JSON = re.compile(r'("(?:%s)"\s*:\s*")[^"]*(")' % "|".join(SECRETS))
_SECRET_FORM = re.compile(r"((?:^|&)(?:%s)=)[^&]*" % "|".join(SECRETS))


def without_secrets(call: ApiCall) -> ApiCall:
    """The call as the audit may keep it: the token request's refresh_token and client_secret and any access
    token in an answer replaced by <redacted> (a URL is redacted too, should a secret ever travel in one)."""
    def scrub(text: str | None) -> str | None:
        return _SECRET_FORM.sub(r"\1<redacted>", _SECRET_JSON.sub(r"\1<redacted>\2", text)) if text else text
    return replace(call, url=redact_url(call.url), request_body=scrub(call.request_body),
                   response_body=scrub(call.response_body))


class ZohoOAuth:
    """`refresh()` is the TokenSlot's refresh: one token request, or a typed error (after pausing, if refused)."""

    def __init__(self, config: ZohoConfig, pauses: Pauses, clock: Clock,
                 audit: Callable[[ApiCall], None] | None = None) -> None:
        self.config = config
        self.pauses = pauses
        self.clock = clock
        self.http = HttpClient(PROVIDER, config.accounts_url, connect_timeout_seconds=config.connect_timeout_seconds,
                               read_timeout_seconds=config.request_timeout_seconds, audit=audit,
                               headers={"Accept": "application/json"})

    def refresh(self) -> IssuedToken:
        now = self.clock()
        pause = self.pauses.get(PAUSE_KEY)
        if pause.reason == UNAUTHORISED and pause.holds(now):
            raise ZohoAuthFailed(f"Zoho refused the refresh token; the Zoho flow is paused until "
                                 f"{pause.paused_until.isoformat()} ({pause.detail})")
        # In the form body, not the query string Zoho's examples use: urllib3 logs request lines at DEBUG.
        form = urlencode({"refresh_token": self.config.refresh_token, "client_id": self.config.client_id,
                          "client_secret": self.config.client_secret, "grant_type": "refresh_token"})
        try:
            answer = self.http.request("POST", TOKEN_PATH, form,
                                       headers={"Content-Type": "application/x-www-form-urlencoded"})
        except TransportError as exc:
            TOKEN_REFRESHES.labels("unavailable").inc()
            raise ZohoUnavailable(f"Zoho accounts server: {exc.detail}", may_have_arrived=False) from None
        try:
            document = json.loads(answer.text)
        except ValueError:
            document = None
        if answer.status >= 500 or not isinstance(document, dict):
            TOKEN_REFRESHES.labels("unavailable").inc()
            raise ZohoUnavailable(f"Zoho accounts server: HTTP {answer.status} {one_line(answer.text, 100)}",
                                  may_have_arrived=False)
        token, lifetime = document.get("access_token"), document.get("expires_in")
        if isinstance(token, str) and token and isinstance(lifetime, (int, float)) and math.isfinite(lifetime) \
                and lifetime > 0:
            TOKEN_REFRESHES.labels("ok").inc()
            TOKEN_EXPIRY.set((now + timedelta(seconds=lifetime)).timestamp())
            if pause.reason == UNAUTHORISED:  # its time is up and the token works again: the flow may go on
                self.pauses.resume(PAUSE_KEY, now, reason=UNAUTHORISED)
            return IssuedToken(token, float(lifetime))
        raise self._refused(document, answer.status)

    def _refused(self, document: dict, status: int) -> ZohoAuthFailed:
        """`{"error":"invalid_code"}`, Access Denied, or any answer without a token: pause, say so once."""
        TOKEN_REFRESHES.labels("refused").inc()
        error = one_line(document.get("error") or "no access_token in the answer", 100)
        if document.get("error_description"):
            error += f": {one_line(document['error_description'], 150)}"
        now = self.clock()
        until = now + timedelta(seconds=self.config.auth_pause_seconds)
        detail = f"Zoho refused the refresh token (HTTP {status}, {error})"
        self.pauses.pause(PAUSE_KEY, UNAUTHORISED, until, now, detail=detail)
        log.error("zoho: %s; the Zoho flow is paused until %s (zoho.auth_pause_seconds). Check zoho.refresh_token, "
                  "zoho.client_id, zoho.client_secret and zoho.accounts_url (the organisation's data centre), then "
                  "`reconciler resume zoho`", detail, until.isoformat())
        return ZohoAuthFailed(f"{detail}; the Zoho flow is paused until {until.isoformat()}")
