"""Ghanaian phone numbers as shops really type them, normalised to 0XXXXXXXXX, and their networks.

A recipient that fails here is rejected with a reason before any API call: `invalid_phone` (not a
Ghanaian mobile number in any accepted form), `unsupported_network` (the order names a network the
reseller does not sell), `network_mismatch` (the number's prefix belongs to another network; numbers
are portable, so this check can be switched off).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

NETWORK_PREFIXES = {
    "MTN": ("024", "025", "053", "054", "055", "059"),
    "TELECEL": ("020", "050"),
    "AIRTELTIGO": ("026", "027", "056", "057"),
}
NETWORK_ALIASES = {"MTN": "MTN", "TELECEL": "TELECEL", "VODAFONE": "TELECEL", "AIRTELTIGO": "AIRTELTIGO",
                   "AIRTEL TIGO": "AIRTELTIGO", "AIRTEL-TIGO": "AIRTELTIGO", "AT": "AIRTELTIGO"}
_SEPARATORS = re.compile(r"[\s\-.()/]")


class RecipientRejected(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Recipient:
    phone: str     # 0XXXXXXXXX, what the reseller is always sent
    network: str   # canonical name: MTN, TELECEL, AIRTELTIGO


def normalise_phone(raw: str | None) -> str:
    """0241234567, 241234567, 233241234567, +233 24 123 4567, 024-123-4567, +233 (0)24... -> 0241234567."""
    digits = _SEPARATORS.sub("", raw or "")
    if not digits:
        raise RecipientRejected("invalid_phone", "no phone number given")
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]  # international dialling prefix
    if not digits.isdigit():
        raise RecipientRejected("invalid_phone", "not a phone number")
    if digits.startswith("233") and len(digits) in (12, 13):
        digits = digits[3:]
    if len(digits) == 10 and digits.startswith("0"):
        digits = digits[1:]
    if len(digits) != 9 or digits[0] not in "25":
        raise RecipientRejected("invalid_phone", f"{len(digits)} digits is not a Ghanaian mobile number")
    return "0" + digits


def network_of(phone: str) -> str | None:
    """The network a normalised number's prefix was issued to (it may have been ported since)."""
    return next((name for name, prefixes in NETWORK_PREFIXES.items() if phone[:3] in prefixes), None)


def canonical_network(name: str | None) -> str | None:
    return NETWORK_ALIASES.get(" ".join((name or "").upper().split()))


def validate_recipient(raw_phone: str | None, raw_network: str | None, supported: tuple[str, ...] = ("MTN",),
                       check_prefix: bool = True) -> Recipient:
    phone = normalise_phone(raw_phone)
    network = canonical_network(raw_network)
    if not (raw_network or "").strip():
        raise RecipientRejected("unsupported_network", "no network given")
    if network is None or network not in supported:
        raise RecipientRejected("unsupported_network", f"network {raw_network!r} is not sold here")
    if check_prefix and network_of(phone) != network:
        raise RecipientRejected("network_mismatch", f"prefix {phone[:3]} is not a {network} prefix")
    return Recipient(phone, network)
