"""What a T2Mobile order must say before Zoho is called: a product of the catalogue (`partner.products`) priced
for its tenure, a customer with an id, a name and an e-mail of a plausible shape. The submit job rejects an
order that fails here; `reconciler enqueue zoho` refuses the same values up front."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from reconciler.config import TENURES, Product

# One @, something before it, a dot in the domain, no spaces: Zoho checks the rest and refuses with a code.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
MAX_EMAIL_CHARS = 254


@dataclass(frozen=True)
class LineItem:
    """What the sales order is for: the catalogue's Zoho item at the tenure's price, and the licence's months."""

    product_id: str
    item_id: str
    rate: float
    months: int


@dataclass(frozen=True)
class Rejection:
    """Why an order cannot be fulfilled as written: `reason` is the reject_reason word, `field` the order's
    column at fault, `detail` one line for a person."""

    reason: str
    field: str
    detail: str


def check_order(order: Mapping[str, Any], products: Mapping[str, Product]) -> LineItem | Rejection:
    """The order's line item, or the first thing wrong with it (in column order)."""
    if not _text(order.get("order_id")):
        return Rejection("missing_order_id", "order_id", "no order_id given (it is the sales order's reference)")
    if not _text(order.get("customer_id")):
        return Rejection("missing_customer", "customer_id", "no customer_id given")
    if not _text(order.get("customer_name")):
        return Rejection("missing_customer", "customer_name", "no customer_name given")
    email = _text(order.get("customer_email"))
    if not email:
        return Rejection("invalid_email", "customer_email", "no customer_email given")
    if len(email) > MAX_EMAIL_CHARS or not _EMAIL.match(email):
        return Rejection("invalid_email", "customer_email", "customer_email is not an e-mail address")
    product_id = _text(order.get("product_id"))
    product = products.get(product_id)
    if product is None:
        known = ", ".join(sorted(products))
        return Rejection("unknown_product", "product_id",
                         f"product {product_id!r} is not in the catalogue (partner.products: {known})")
    tenure = _text(order.get("tenure"))
    if tenure not in TENURES:
        return Rejection("invalid_tenure", "tenure", f"tenure {tenure!r} is none of {', '.join(TENURES)}")
    if tenure not in product.prices:
        priced = ", ".join(t for t in TENURES if t in product.prices)
        return Rejection("tenure_not_sold", "tenure", f"{product_id} is not sold for {tenure} (only {priced})")
    return LineItem(product_id, product.item_id, product.prices[tenure], TENURES[tenure])


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""
