"""schemathesis hooks for the intake's conformance run (loaded through SCHEMATHESIS_HOOKS).

A well-behaved client sends a new Idempotency-Key with each new request (the draft's SHOULD). Hypothesis draws
the simplest keys again and again ("0", "!"), so two schema-valid requests with different bodies would share a
key and rightly get 422, which schemathesis would count as valid data refused. A schema-valid case therefore
gets a fresh key of the documented form; a case whose key is itself the invalid part keeps it.
"""
from __future__ import annotations

import uuid

import schemathesis


@schemathesis.hook
def before_call(context, case, kwargs) -> None:
    headers = case.headers or {}
    if "Idempotency-Key" in headers and case.meta is not None and case.meta.generation.mode.is_positive:
        headers["Idempotency-Key"] = f'"{uuid.uuid4()}"'
