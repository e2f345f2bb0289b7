"""Phone numbers and networks, as shops really type them (table-driven)."""
from __future__ import annotations

import pytest

from reconciler.providers.mtn.phones import NETWORK_PREFIXES, RecipientRejected, normalise_phone, validate_recipient


@pytest.mark.parametrize("typed", [
    "0241234567", "241234567", "233241234567", "+233241234567", "+233 24 123 4567", "024-123-4567",
    "024 123 4567", " 0241234567 ", "00233241234567", "+233 (0)24 123 4567", "(024) 123-4567", "024.123.4567",
])
def test_what_shops_type_becomes_0xxxxxxxxx(typed):
    assert normalise_phone(typed) == "0241234567"


@pytest.mark.parametrize("typed", [
    "", None, "024123456", "02412345678", "1241234567", "abc", "+1 415 555 0100", "233-24-123-45", "0341234567",
    "++233241234567", "0241234567x",
])
def test_what_is_not_a_ghanaian_mobile_number_is_invalid(typed):
    with pytest.raises(RecipientRejected) as caught:
        normalise_phone(typed)
    assert caught.value.reason == "invalid_phone"


@pytest.mark.parametrize("network, prefix", [(n, p) for n, prefixes in NETWORK_PREFIXES.items() for p in prefixes])
def test_every_prefix_of_the_seed_list_is_detected(network, prefix):
    phone = prefix + "1234567"
    accepted = validate_recipient(phone, network, supported=tuple(NETWORK_PREFIXES))
    assert (accepted.phone, accepted.network) == (phone, network)
    others = [n for n in NETWORK_PREFIXES if n != network]
    with pytest.raises(RecipientRejected) as caught:
        validate_recipient(phone, others[0], supported=tuple(NETWORK_PREFIXES))
    assert caught.value.reason == "network_mismatch"


@pytest.mark.parametrize("phone, network, reason", [
    ("0201234567", "MTN", "network_mismatch"),        # a Telecel prefix on an MTN order
    ("0241234567", "GLO", "unsupported_network"),
    ("0241234567", "", "unsupported_network"),
    ("0201234567", "Telecel", "unsupported_network"),  # known network, but this reseller sells MTN only
    ("12345", "MTN", "invalid_phone"),
])
def test_rejection_reasons(phone, network, reason):
    with pytest.raises(RecipientRejected) as caught:
        validate_recipient(phone, network)
    assert caught.value.reason == reason


def test_the_prefix_check_can_be_switched_off_for_ported_numbers():
    assert validate_recipient("+233 20 123 4567", "mtn", check_prefix=False).phone == "0201234567"


def test_aliases_and_case_of_network_names():
    assert validate_recipient("0271234567", "airtel tigo", supported=("AIRTELTIGO",)).network == "AIRTELTIGO"
    assert validate_recipient("0501234567", "Vodafone", supported=("TELECEL",)).network == "TELECEL"
