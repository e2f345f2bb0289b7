"""provision(): a new licence, a renewal from the current expiry once per order, racing renewals, an expired
licence replaced rather than renewed; add_months at month ends."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from reconciler.engine.schema import licence_extensions, subscriptions
from reconciler.providers.zoho.licences import (
    ACTIVE, EXPIRED, add_months, expire_past, new_activation_reference, provision, renewals_missing_extension,
    repair_extension,
)

from tests.providers.zoho.licensing import add_order, fulfil, order_row
from tests.racing import together

NOW = datetime(2026, 5, 10, 9, 30, tzinfo=UTC)


def licences(engine):
    with engine.connect() as conn:
        return conn.execute(select(subscriptions).order_by(subscriptions.c.id)).mappings().all()


def extensions(engine):
    with engine.connect() as conn:
        return conn.execute(select(licence_extensions).order_by(licence_extensions.c.id)).mappings().all()


@pytest.mark.parametrize("start, months, expected", [
    (datetime(2026, 1, 31, 10, tzinfo=UTC), 1, datetime(2026, 2, 28, 10, tzinfo=UTC)),
    (datetime(2028, 1, 31, 10, tzinfo=UTC), 1, datetime(2028, 2, 29, 10, tzinfo=UTC)),
    (datetime(2028, 2, 29, 10, tzinfo=UTC), 12, datetime(2029, 2, 28, 10, tzinfo=UTC)),
    (datetime(2026, 8, 31, 23, 59, tzinfo=UTC), 6, datetime(2027, 2, 28, 23, 59, tzinfo=UTC)),
    (datetime(2026, 11, 15, tzinfo=UTC), 3, datetime(2027, 2, 15, tzinfo=UTC)),
    (datetime(2026, 5, 10, tzinfo=UTC), 24, datetime(2028, 5, 10, tzinfo=UTC)),
])
def test_months_are_calendar_months_clamped_to_the_last_day(start, months, expected):
    assert add_months(start, months) == expected


def test_activation_references_read_well_and_do_not_repeat():
    refs = {new_activation_reference() for _ in range(2000)}
    assert len(refs) == 2000
    assert all(re.fullmatch(r"T2M-[A-HJKMNP-TV-Z2-9]{4}-[A-HJKMNP-TV-Z2-9]{4}-[A-HJKMNP-TV-Z2-9]{4}", r) for r in refs)


def test_a_first_order_starts_a_licence_now_for_the_tenure(engine):
    order = add_order(engine, tenure="3_MONTHS")
    licence = fulfil(engine, order, NOW)
    assert not licence.renewed
    assert licence.expiry_date == datetime(2026, 8, 10, 9, 30, tzinfo=UTC)
    [row] = licences(engine)
    assert (row["id"], row["activation_reference"], row["starts_at"], row["expires_at"], row["status"],
            row["zoho_order_id"], row["tenure"]) == (
        licence.subscription_id, licence.activation_reference, NOW, licence.expiry_date, ACTIVE, order["id"],
        "3_MONTHS")
    stored = order_row(engine, order["id"])
    assert (stored["subscription_id"], stored["renewal"]) == (licence.subscription_id, False)


def test_a_renewal_extends_from_the_current_expiry_not_from_now(engine):
    first = fulfil(engine, add_order(engine, tenure="12_MONTHS"), NOW)  # expires 2027-05-10
    later = NOW + timedelta(days=200)
    renewal = add_order(engine, tenure="1_MONTH")
    licence = fulfil(engine, renewal, later)
    assert licence.renewed
    assert (licence.subscription_id, licence.activation_reference) == (first.subscription_id,
                                                                      first.activation_reference)
    assert licence.expiry_date == datetime(2027, 6, 10, 9, 30, tzinfo=UTC)
    [row] = licences(engine)
    assert (row["expires_at"], row["status"]) == (licence.expiry_date, ACTIVE)
    [extension] = extensions(engine)
    assert (extension["zoho_order_id"], extension["previous_expiry"], extension["new_expiry"], extension["months"],
            extension["cause"]) == (renewal["id"], first.expiry_date, licence.expiry_date, 1, "fulfilment")
    assert order_row(engine, renewal["id"])["renewal"] is True


def test_provisioning_again_for_the_same_order_returns_the_same_licence_and_changes_nothing(engine):
    started = add_order(engine, tenure="1_MONTH")
    first = fulfil(engine, started, NOW)
    renewal = add_order(engine, tenure="6_MONTHS")
    renewed = fulfil(engine, renewal, NOW + timedelta(days=3))
    for _ in range(3):
        assert fulfil(engine, renewal, NOW + timedelta(days=5)) == renewed
        assert fulfil(engine, started, NOW + timedelta(days=5)) == first  # as it was, though renewed since
    assert len(extensions(engine)) == 1
    [row] = licences(engine)
    assert row["expires_at"] == add_months(add_months(NOW, 1), 6)


def test_different_customers_and_products_get_licences_of_their_own(engine):
    a = fulfil(engine, add_order(engine, customer="A"), NOW)
    b = fulfil(engine, add_order(engine, customer="B"), NOW)
    c = fulfil(engine, add_order(engine, customer="A", product="ZOHO_BOOKS"), NOW)
    assert len({a.subscription_id, b.subscription_id, c.subscription_id}) == 3
    assert not (a.renewed or b.renewed or c.renewed)


def test_an_expired_licence_is_not_renewed_a_new_one_starts(engine):
    old = fulfil(engine, add_order(engine), NOW)
    after_expiry = old.expiry_date + timedelta(seconds=1)
    new = fulfil(engine, add_order(engine, tenure="3_MONTHS"), after_expiry)
    assert not new.renewed and new.subscription_id != old.subscription_id
    assert new.activation_reference != old.activation_reference
    assert new.expiry_date == add_months(after_expiry, 3)
    assert [(r["id"], r["status"], r["expires_at"]) for r in licences(engine)] == [
        (old.subscription_id, EXPIRED, old.expiry_date), (new.subscription_id, ACTIVE, new.expiry_date)]
    assert extensions(engine) == []


def test_a_licence_expiring_at_this_very_moment_is_expired_not_renewed(engine):
    old = fulfil(engine, add_order(engine), NOW)
    assert not fulfil(engine, add_order(engine), old.expiry_date).renewed


def test_racing_renewals_for_different_orders_both_apply(engine, replicas):
    first = fulfil(engine, add_order(engine, tenure="1_MONTH"), NOW)
    orders = [add_order(engine, tenure=tenure) for tenure in ("1_MONTH", "3_MONTHS", "6_MONTHS", "12_MONTHS",
                                                              "1_MONTH", "24_MONTHS")]
    results = together(*(lambda e=e, o=o: fulfil(e, o, NOW + timedelta(days=1))
                         for (e, _), o in zip(replicas, orders)))
    assert all(r.renewed and r.subscription_id == first.subscription_id for r in results)
    [row] = licences(engine)
    assert row["expires_at"] == add_months(first.expiry_date, 1 + 3 + 6 + 12 + 1 + 24)
    chain = extensions(engine)
    assert len(chain) == 6
    assert chain[0]["previous_expiry"] == first.expiry_date
    assert all(a["new_expiry"] == b["previous_expiry"] for a, b in zip(chain, chain[1:]))
    assert chain[-1]["new_expiry"] == row["expires_at"]


def test_racing_first_orders_start_one_licence_and_renew_it(engine, replicas):
    orders = [add_order(engine, tenure="1_MONTH") for _ in replicas]
    results = together(*(lambda e=e, o=o: fulfil(e, o, NOW) for (e, _), o in zip(replicas, orders)))
    assert [r.renewed for r in results].count(False) == 1
    [row] = licences(engine)
    assert row["expires_at"] == add_months(NOW, len(replicas))


def test_a_first_order_racing_itself_starts_one_licence_and_does_not_renew_it(engine, replicas):
    order = add_order(engine, tenure="3_MONTHS")
    results = together(*(lambda e=e: fulfil(e, order, NOW) for e, _ in replicas))
    assert len(set(results)) == 1 and not results[0].renewed
    [row] = licences(engine)
    assert row["expires_at"] == add_months(NOW, 3)
    assert extensions(engine) == []


def test_the_same_order_racing_itself_is_extended_once(engine, replicas):
    fulfil(engine, add_order(engine), NOW)
    renewal = add_order(engine, tenure="3_MONTHS")
    results = together(*(lambda e=e: fulfil(e, renewal, NOW) for e, _ in replicas))
    assert len(set(results)) == 1 and results[0].renewed
    assert len(extensions(engine)) == 1


def test_a_tenure_of_no_months_or_an_order_without_customer_or_product_is_refused(engine):
    order = add_order(engine)
    with pytest.raises(ValueError, match="months > 0"), engine.begin() as conn:
        provision(conn, order, 0, NOW)
    for missing in ("customer_id", "product_id"):
        with pytest.raises(ValueError, match="needs a customer_id and a product_id"), engine.begin() as conn:
            provision(conn, {**order, missing: None}, 1, NOW)
    assert licences(engine) == []


def test_expire_past_marks_only_licences_past_their_expiry(engine):
    short = fulfil(engine, add_order(engine, customer="A", tenure="1_MONTH"), NOW)
    long = fulfil(engine, add_order(engine, customer="B", tenure="3_MONTHS"), NOW)
    assert expire_past(engine, short.expiry_date - timedelta(seconds=1)) == 0
    assert expire_past(engine, short.expiry_date) == 1
    assert expire_past(engine, short.expiry_date) == 0
    assert {r["id"]: r["status"] for r in licences(engine)} == {short.subscription_id: EXPIRED,
                                                                long.subscription_id: ACTIVE}


def test_a_completed_renewal_without_its_extension_is_repaired_once(engine):
    first = fulfil(engine, add_order(engine, tenure="1_MONTH"), NOW)
    renewal = fulfil(engine, add_order(engine, tenure="3_MONTHS"), NOW)
    with engine.begin() as conn:  # the extension lost (a restore from a backup taken in between, say)
        conn.execute(licence_extensions.delete())
        conn.execute(subscriptions.update().values(expires_at=first.expiry_date))
    [missing] = renewals_missing_extension(engine)
    repaired = repair_extension(engine, missing, NOW + timedelta(days=2))
    assert repaired == renewal
    assert renewals_missing_extension(engine) == []
    [row] = licences(engine)
    assert row["expires_at"] == renewal.expiry_date
    [extension] = extensions(engine)
    assert extension["cause"] == "repair"
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(licence_extensions)) == 1


def test_a_revoked_licence_is_not_renewed_a_new_one_starts(engine):
    old = fulfil(engine, add_order(engine), NOW)
    with engine.begin() as conn:
        conn.execute(subscriptions.update().values(status="revoked"))
    new = fulfil(engine, add_order(engine), NOW + timedelta(days=1))
    assert not new.renewed and new.subscription_id != old.subscription_id
    assert [(r["status"], r["expires_at"]) for r in licences(engine)] == [("revoked", old.expiry_date),
                                                                         (ACTIVE, new.expiry_date)]
