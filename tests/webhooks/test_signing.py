"""The one HMAC helper: what the reseller sends us and what we send verify the same way."""
from __future__ import annotations

import hashlib
import hmac

import pytest

from reconciler.webhooks.signing import sha256_signature, verify_sha256_signature

BODY = b'{"event":"order.status_changed"}'


def test_the_header_is_the_hex_hmac_of_the_raw_body():
    assert sha256_signature("s3cret", BODY) == "sha256=" + hmac.new(b"s3cret", BODY, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("header, valid", [
    (sha256_signature("s3cret", BODY), True),
    (sha256_signature("s3cret", BODY).removeprefix("sha256="), True),  # prefix optional
    (sha256_signature("s3cret", BODY).upper().replace("SHA256=", "sha256="), True),
    (sha256_signature("other", BODY), False),
    ("sha256=é", False),  # not ASCII: wrong, not an error
    ("sha256=\udc80", False),
    ("", False), (None, False),
])
def test_verification(header, valid):
    assert verify_sha256_signature("s3cret", BODY, header) is valid


def test_no_secret_verifies_nothing():
    assert verify_sha256_signature("", BODY, sha256_signature("", BODY)) is False
