"""The daemon's logging: one handler for every logger (ours, the HTTP server's, the libraries'), as text or
one JSON object per line (`daemon.log_format`), and RepeatedFailure, so a dependency that stays down is
logged once with its cause and then as a count, never once per poll.
"""
from __future__ import annotations

import logging
import re
import sys
import threading
import time
from typing import Callable, TextIO

from pythonjsonlogger.json import JsonFormatter
from sqlalchemy.exc import DBAPIError

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REMIND_EVERY_SECONDS = 300.0


def mask_phone(phone: str | None) -> str:
    """For logs: 0241234567 -> 024****567."""
    if not phone or len(phone) < 7:
        return "***"
    return phone[:3] + "*" * (len(phone) - 6) + phone[-3:]


def mask_email(email: str | None) -> str:
    """For logs: ada.lovelace@example.com -> a***@example.com (the domain says enough to tell customers apart)."""
    if not email or "@" not in email:
        return "***"
    local, domain = email.rsplit("@", 1)
    return f"{local[:1]}***@{domain}"


def configure_logging(level: str, log_format: str = "text", stream: TextIO | None = None) -> logging.Handler:
    """Send every log record, and every exception no one caught in any thread, through one handler on
    the root logger; returns that handler."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter("%(levelname)s %(name)s %(message)s", timestamp="time",
                                           rename_fields={"levelname": "level", "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)  # its INFO and DEBUG lines carry order data
    logging.captureWarnings(True)
    crashed = logging.getLogger("reconciler.crash")
    threading.excepthook = lambda args: crashed.error(
        "uncaught exception in thread %s", args.thread.name if args.thread else "?",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
    return handler


def cause(exc: BaseException) -> str:
    """An exception as one line: the driver's own error for a database error (SQLAlchemy's text would add
    the statement and its parameters, order data included)."""
    inner = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return f"{type(inner).__name__}: {' '.join(str(inner).split())}"[:500]


class RepeatedFailure:
    """Logs a failure that repeats (a dependency down, a job failing every run) once, with its cause; then
    at most every `remind_every_seconds` with how many times it failed since; and once when it works again.
    A different cause is logged at once. For one thread at a time (a job's runs, a writer thread)."""

    def __init__(self, log: logging.Logger, what: str, remind_every_seconds: float = REMIND_EVERY_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.what = what
        self.remind_every_seconds = remind_every_seconds
        self.monotonic = monotonic
        self.failures = 0
        self._cause: str | None = None
        self._since: float = 0.0
        self._last_logged: float = 0.0
        self._unlogged = 0

    def failed(self, exc: BaseException, traceback: bool = False, hint: str = "") -> None:
        """Another failure; `traceback` for an unexpected one (an expected outage is one line)."""
        now, why = self.monotonic(), cause(exc)
        self.failures += 1
        if why != self._cause:
            if self.failures == 1:
                self._since = now
            self._cause, self._last_logged, self._unlogged = why, now, 0
            self.log.warning("%s failed: %s%s", self.what, why, hint, exc_info=exc if traceback else None)
            return
        self._unlogged += 1
        if now - self._last_logged >= self.remind_every_seconds:
            self.log.warning("%s still failing: %d more times in the last %.0f s: %s", self.what, self._unlogged,
                             now - self._last_logged, why)
            self._last_logged, self._unlogged = now, 0

    def succeeded(self) -> None:
        """It works again: say so once, with how long and how often it failed."""
        if self.failures:
            self.log.info("%s works again after %d failures in %.0f s (last: %s)", self.what, self.failures,
                             self.monotonic() - self._since, self._cause)
            self.failures, self._cause, self._unlogged = 0, None, 0


def one_line(text: object, limit: int) -> str:
    """The start of a body (or any value) on one line, for messages and listings: white space folded, at most
    `limit` characters."""
    return " ".join(str(text).split())[:limit]


_DIGIT_RUN = re.compile(r"\+?\d[\d \-]{7,}\d")
_EMAIL = re.compile(r"[^\s@<>()\[\],;:\"']+@[^\s@<>()\[\],;:\"']+")


def mask_personal(text: str) -> str:
    """Mask anything in a message that could be a phone number or an e-mail address (a provider may quote them)."""
    return _DIGIT_RUN.sub(lambda m: mask_phone(m.group()), _EMAIL.sub(lambda m: mask_email(m.group()), text))
