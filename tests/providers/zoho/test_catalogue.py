"""What an order must say before Zoho is called (table-driven): the first thing wrong names its column."""
from __future__ import annotations

import pytest

from reconciler.config import DEFAULT_PRODUCTS, Product
from reconciler.providers.zoho.catalogue import LineItem, Rejection, check_order

GOOD = {"order_id": "T2M-1", "customer_id": "CUST-1", "customer_name": "Ada Obi", "customer_email": "ada@example.ng",
        "product_id": "ZOHO_CRM_STD", "tenure": "12_MONTHS"}
PRODUCTS = {**DEFAULT_PRODUCTS, "BOOKS_MONTHLY": Product("Zoho Books", "99", "NGN", {"1_MONTH": 5000.0})}


def test_a_good_order_is_the_catalogue_item_at_the_tenure_price():
    assert check_order(GOOD, PRODUCTS) == LineItem("ZOHO_CRM_STD", "4815000000044208", 150000.0, 12)
    assert check_order({**GOOD, "customer_email": " ada@example.ng "}, PRODUCTS) == check_order(GOOD, PRODUCTS)


@pytest.mark.parametrize("change, reason, field", [
    ({"order_id": "  "}, "missing_order_id", "order_id"),
    ({"customer_id": None}, "missing_customer", "customer_id"),
    ({"customer_name": ""}, "missing_customer", "customer_name"),
    ({"customer_email": None}, "invalid_email", "customer_email"),
    ({"customer_email": "ada.example.ng"}, "invalid_email", "customer_email"),
    ({"customer_email": "ada@localhost"}, "invalid_email", "customer_email"),
    ({"customer_email": "ada obi@example.ng"}, "invalid_email", "customer_email"),
    ({"customer_email": "a@b@example.ng"}, "invalid_email", "customer_email"),
    ({"customer_email": "a" * 250 + "@example.ng"}, "invalid_email", "customer_email"),
    ({"product_id": "ZOHO_CRM_PRO"}, "unknown_product", "product_id"),
    ({"product_id": None}, "unknown_product", "product_id"),
    ({"tenure": "2_WEEKS"}, "invalid_tenure", "tenure"),
    ({"tenure": None}, "invalid_tenure", "tenure"),
    ({"product_id": "BOOKS_MONTHLY", "tenure": "12_MONTHS"}, "tenure_not_sold", "tenure"),
])
def test_a_bad_order_is_rejected_naming_its_column(change, reason, field):
    rejection = check_order({**GOOD, **change}, PRODUCTS)
    assert isinstance(rejection, Rejection)
    assert (rejection.reason, rejection.field) == (reason, field)
    assert "\n" not in rejection.detail


def test_the_detail_says_what_would_have_been_right():
    assert check_order({**GOOD, "product_id": "X"}, PRODUCTS).detail == (
        "product 'X' is not in the catalogue (partner.products: BOOKS_MONTHLY, ZOHO_CRM_STD)")
    assert check_order({**GOOD, "product_id": "BOOKS_MONTHLY"}, PRODUCTS).detail == (
        "BOOKS_MONTHLY is not sold for 12_MONTHS (only 1_MONTH)")
