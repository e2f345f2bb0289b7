"""The 03:00 check: licences past their expiry become expired; a completed renewal missing its extension gets it,
once, and the partner hears no second SUBSCRIPTION_RENEWED."""
from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from jobs.renewal_check import check_renewals
from reconciler.engine.events import emit_events
from reconciler.engine.schema import licence_extensions, subscriptions, zoho_orders
from reconciler.providers.zoho.events import PartnerEvent, partner_event
from reconciler.providers.zoho.licences import ACTIVE, EXPIRED, REVOKED, add_months

from tests.conftest import FakeClock
from tests.providers.zoho.licensing import add_order, fulfil, partner_config, partner_events

NOW = datetime(2026, 5, 10, 2, tzinfo=UTC)  # 03:00 in Lagos


def statuses(engine) -> dict[int, tuple[str, datetime]]:
    with engine.connect() as conn:
        return {r.id: (r.status, r.expires_at) for r in conn.execute(select(subscriptions))}


def test_the_check_expires_licences_past_their_expiry_and_no_other(engine):
    past = fulfil(engine, add_order(engine, customer="A"), NOW - timedelta(days=40))
    running = fulfil(engine, add_order(engine, customer="B"), NOW - timedelta(days=20))
    report = check_renewals(engine, partner_config(), FakeClock(NOW))
    assert (report.expired, report.repaired, report.unrepaired) == (1, 0, 0)
    assert statuses(engine) == {past.subscription_id: (EXPIRED, past.expiry_date),
                                running.subscription_id: (ACTIVE, running.expiry_date)}
    assert check_renewals(engine, partner_config(), FakeClock(NOW)).expired == 0


def test_a_renewal_missing_its_extension_is_repaired_once_without_a_second_renewed_event(engine):
    config = partner_config()
    first = fulfil(engine, add_order(engine, customer="A"), NOW - timedelta(days=20))
    renewal = add_order(engine, customer="A", tenure="6_MONTHS")
    renewed = fulfil(engine, renewal, NOW - timedelta(days=10))
    with engine.begin() as conn:  # as the fulfilment does: the event with the state change
        emit_events(conn, "zoho_orders", [partner_event(config, PartnerEvent.SUBSCRIPTION_RENEWED,
                                                        renewal["order_id"], {"orderId": renewal["order_id"]})], NOW)
        # ... and then the extension went missing (a restore from a backup taken in between, say)
        conn.execute(licence_extensions.delete())
        conn.execute(update(subscriptions).values(expires_at=first.expiry_date))

    for day in range(3):
        report = check_renewals(engine, config, FakeClock(NOW + timedelta(days=day)))
        assert (report.repaired, report.unrepaired) == (1 if day == 0 else 0, 0)
    assert statuses(engine) == {first.subscription_id: (ACTIVE, add_months(first.expiry_date, 6))}
    assert renewed.expiry_date == add_months(first.expiry_date, 6)
    with engine.connect() as conn:
        assert conn.execute(select(licence_extensions.c.zoho_order_id, licence_extensions.c.cause)).all() == [
            (renewal["id"], "repair")]
    assert len(partner_events(engine, "SUBSCRIPTION_RENEWED")) == 1


def test_a_repaired_renewal_of_a_licence_that_lapsed_meanwhile_brings_it_back(engine):
    first = fulfil(engine, add_order(engine, customer="A"), NOW - timedelta(days=40))
    renewal = add_order(engine, customer="A", tenure="3_MONTHS")
    fulfil(engine, renewal, NOW - timedelta(days=35))
    with engine.begin() as conn:
        conn.execute(licence_extensions.delete())
        conn.execute(update(subscriptions).values(expires_at=first.expiry_date))
    report = check_renewals(engine, partner_config(), FakeClock(NOW))
    assert (report.expired, report.repaired) == (0, 1)  # repaired first: the licence never lapses
    assert statuses(engine) == {first.subscription_id: (ACTIVE, add_months(first.expiry_date, 3))}


def test_a_renewal_with_no_licence_to_extend_is_left_for_a_person(engine, caplog):
    order = add_order(engine, customer="GHOST")
    with engine.begin() as conn:  # completed as a renewal by something other than the fulfilment
        conn.execute(update(zoho_orders).where(zoho_orders.c.id == order["id"]).values(status="completed",
                                                                                     renewal=True))
    other = fulfil(engine, add_order(engine, customer="B"), NOW - timedelta(days=1))
    with caplog.at_level(logging.ERROR):
        report = check_renewals(engine, partner_config(), FakeClock(NOW))
    assert (report.repaired, report.unrepaired) == (0, 1)
    assert f"order {order['order_id']}: completed as a renewal of GHOST ZOHO_CRM_STD" in caplog.text
    assert statuses(engine) == {other.subscription_id: (ACTIVE, other.expiry_date)}


def test_a_renewal_of_a_revoked_licence_is_not_repaired_the_licence_stays_revoked(engine):
    first = fulfil(engine, add_order(engine, customer="A"), NOW - timedelta(days=5))
    fulfil(engine, add_order(engine, customer="A", tenure="3_MONTHS"), NOW - timedelta(days=4))
    with engine.begin() as conn:
        conn.execute(licence_extensions.delete())
        conn.execute(update(subscriptions).values(expires_at=first.expiry_date, status=REVOKED))
    report = check_renewals(engine, partner_config(), FakeClock(NOW))
    assert (report.repaired, report.unrepaired) == (0, 1)
    assert statuses(engine) == {first.subscription_id: (REVOKED, first.expiry_date)}
