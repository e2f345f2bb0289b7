"""What can go wrong with a Zoho call, typed by what the caller must do about it. Every message is one line
of Zoho's own words or ours, never a token or a secret."""
from __future__ import annotations

from datetime import datetime


class ZohoError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ZohoAuthFailed(ZohoError):
    """Zoho refused the refresh token (`invalid_code`, Access Denied) or still refused the access token after
    one refresh: the client has paused the flow (pause key "zoho", reason "unauthorised") before raising."""


class ZohoRateLimited(ZohoError):
    """HTTP 429 or code 43/44/45: nothing was done; try again at `retry_at`, without spending an attempt."""

    def __init__(self, message: str, retry_at: datetime) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class ZohoDailyCapReached(ZohoError):
    """zoho.requests_per_day is used up: the client has paused the flow (reason "daily_cap") until `until`,
    the next day."""

    def __init__(self, message: str, until: datetime) -> None:
        super().__init__(message)
        self.until = until


class ZohoRejected(ZohoError):
    """Zoho refused the request with a non-zero `code` (validation and the like): final for the order."""

    def __init__(self, message: str, code: int | None) -> None:
        super().__init__(message)
        self.code = code


class ZohoNotFound(ZohoRejected):
    """Code 1002: what the call named does not exist."""


class ZohoUnavailable(ZohoError):
    """No usable answer: a transport error, 5xx, code 1000, an unreadable body. `may_have_arrived`: the request
    may have been carried out (a read timeout or reset after sending, a 5xx), so a create is in doubt."""

    def __init__(self, message: str, may_have_arrived: bool) -> None:
        super().__init__(message)
        self.may_have_arrived = may_have_arrived
