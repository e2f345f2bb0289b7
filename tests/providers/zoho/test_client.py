"""The Zoho client against the fake Zoho over real sockets, on SQLite and PostgreSQL: the calls the flow makes,
the shared token, each fault and what the client does about it."""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from reconciler.config import DEFAULT_PRODUCTS
from reconciler.coordination.pauses import Pauses
from reconciler.engine.schema import api_calls
from reconciler.http.client import OrderRef
from reconciler.providers.zoho.client import (
    SalesOrder, ZohoAuthFailed, ZohoClient, ZohoDailyCapReached, ZohoNotFound, ZohoRateLimited, ZohoRejected,
    ZohoUnavailable,
)
from reconciler.providers.zoho.fake import FakeZoho

from tests.providers.zoho.support import config_for
from tests.racing import together

ITEM_ID = DEFAULT_PRODUCTS["ZOHO_CRM_STD"].item_id


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def fake(make_fake_zoho, clock) -> FakeZoho:
    return make_fake_zoho(clock=clock)


@pytest.fixture
def client(fake: FakeZoho, engine, clock) -> ZohoClient:
    return ZohoClient(config_for(fake), engine, "worker-1", clock=clock)


def test_a_licence_sale_end_to_end_with_nothing_secret_in_the_audit_or_the_log(fake: FakeZoho, client: ZohoClient,
                                                                                 engine, clock, caplog) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3 logs every request line at DEBUG
    order = OrderRef("zoho_orders", 7)
    assert client.find_contact_by_email("ada@example.com", order=order) is None
    customer = client.create_contact("Ada Lovelace", "ada@example.com", "+2348012345678", order=order)
    assert client.find_contact_by_email("ADA@example.com ", order=order) == customer
    assert client.find_salesorder("T2M-1", order=order) is None
    created = client.create_salesorder(customer, ITEM_ID, 15000.0, "T2M-1", order=order)
    assert created == SalesOrder(created.salesorder_id, "SO-00001", "T2M-1", "draft")
    client.mark_open(created.salesorder_id, order=order)
    assert client.find_salesorder("T2M-1", order=order) == SalesOrder(created.salesorder_id, "SO-00001", "T2M-1",
                                                                       "open")
    assert client.organisation() == fake.organization_name
    assert fake.token_requests == 1  # one token for every call

    with engine.connect() as conn:
        rows = conn.execute(select(api_calls)).mappings().all()
    assert len(rows) == 9 and all(row["provider"] == "zoho" for row in rows)
    assert sum(row["order_id"] == 7 for row in rows) == 7
    token_call = next(row for row in rows if "/oauth/v2/token" in row["url"])
    assert token_call["request_body"] == ("refresh_token=<redacted>&client_id=fake-client-id&client_secret=<redacted>"
                                          "&grant_type=refresh_token")
    assert '"access_token": "<redacted>"' in token_call["response_body"]
    audit = repr([dict(row) for row in rows])
    assert "POST /oauth/v2/token" in caplog.text
    for secret in (fake.refresh_token, fake.client_secret, *fake.issued_tokens):
        assert secret not in audit
        assert secret not in caplog.text
    assert all(f"organization_id={fake.organization_id}" in row["url"] for row in rows if "/books/v3/" in row["url"])

    usage = client.usage(clock())
    assert (usage.calls_this_window, usage.calls_today, usage.requests_per_window, usage.requests_per_day) == (
        8, 8, 100, 1000)
    assert usage.token_expires_at == clock() + timedelta(seconds=3600)
    assert "token" not in repr(usage).replace("token_expires_at", "")


def test_the_token_is_refreshed_ahead_of_its_expiry_and_shared(fake: FakeZoho, client: ZohoClient, engine,
                                                                 clock) -> None:
    other = ZohoClient(config_for(fake), engine, "worker-2", clock=clock)
    client.organisation()
    other.organisation()
    assert fake.token_requests == 1
    clock.advance(3600 - 300 - 1)  # still outside zoho.token_refresh_ahead_seconds
    other.organisation()
    assert fake.token_requests == 1
    clock.advance(2)
    other.organisation()
    client.organisation()
    assert fake.token_requests == 2
    assert sample("reconciler_zoho_token_expiry_timestamp_seconds") == pytest.approx(
        (clock() + timedelta(seconds=3600 - 1)).timestamp(), abs=2)


@pytest.mark.parametrize("refusal, status", [("invalid_code", 200), ("access_denied", 200), ("access_denied", 400)])
def test_a_refused_refresh_token_pauses_the_flow_once_without_a_storm(fake: FakeZoho, engine, clock, caplog,
                                                                      refusal: str, status: int) -> None:
    config = config_for(fake, auth_pause_seconds=300)
    clients = [ZohoClient(config, engine, f"worker-{i}", clock=clock) for i in range(3)]
    fake.configure(refresh_refusal=refusal, access_denied_status=status)
    refused_before = sample("reconciler_zoho_token_refreshes_total", result="refused")
    failures: list[BaseException] = []

    def order() -> None:
        try:
            clients[len(failures) % 3].find_salesorder("T2M-1")
        except BaseException as exc:  # noqa: B902 (collected for the assertion)
            failures.append(exc)

    with caplog.at_level(logging.INFO):
        threads = [threading.Thread(target=order) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(failures) == 12 and all(isinstance(f, ZohoAuthFailed) for f in failures)
    assert fake.token_requests == 1 and fake.api_calls == 0
    assert sample("reconciler_zoho_token_refreshes_total", result="refused") - refused_before == 1
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1 and "paused" in errors[0].getMessage()
    pause = Pauses(engine).get("zoho")
    assert (pause.reason, pause.paused_until) == ("unauthorised", clock() + timedelta(seconds=300))
    for failure in failures:
        assert fake.refresh_token not in str(failure) and fake.client_secret not in str(failure)

    clock.advance(301)  # the pause is over and the refresh token works again: the flow goes on by itself
    fake.configure(refresh_refusal=None)
    assert clients[0].find_salesorder("T2M-1") is None
    assert not Pauses(engine).get("zoho").paused


@pytest.mark.parametrize("answer", ["code_57", "invalid_oauthtoken"])
def test_a_refused_access_token_is_refreshed_once_and_the_call_tried_once_more(fake: FakeZoho, client: ZohoClient,
                                                                              engine, answer: str) -> None:
    client.organisation()
    fake.configure(refuse_tokens=1, refused_token_answer=answer)
    customer = client.create_contact("Ada", "ada@example.com", None)
    assert fake.token_requests == 2 and [c["contact_id"] for c in fake.contacts] == [customer]

    fake.configure(refuse_tokens=2)
    with pytest.raises(ZohoAuthFailed, match="freshly refreshed"):
        client.find_contact_by_email("ada@example.com")
    assert fake.token_requests == 3
    assert Pauses(engine).get("zoho").reason == "unauthorised"
    with pytest.raises(ZohoAuthFailed):  # paused: no token request, no call
        client.find_contact_by_email("ada@example.com")
    assert fake.token_requests == 3


def test_a_429_defers_without_a_pause(fake: FakeZoho, client: ZohoClient, engine, clock) -> None:
    customer = client.create_contact("Ada", "ada@example.com", None)
    fake.configure(rate_limit_429=1)
    with pytest.raises(ZohoRateLimited) as raised:
        client.create_salesorder(customer, ITEM_ID, 15000.0, "T2M-1")
    assert raised.value.retry_at == clock() + timedelta(seconds=60)
    assert fake.salesorders == [] and not Pauses(engine).get("zoho").paused
    assert client.create_salesorder(customer, ITEM_ID, 15000.0, "T2M-1").reference_number == "T2M-1"


def test_the_daily_cap_is_counted_by_all_replicas_and_pauses_until_the_next_utc_day(fake: FakeZoho, engine,
                                                                                     clock) -> None:
    clock.now = datetime(2026, 11, 30, 22, 0, tzinfo=timezone.utc)
    config = config_for(fake, requests_per_day=3)
    first, second = (ZohoClient(config, engine, f"worker-{i}", clock=clock) for i in (1, 2))
    first.organisation()
    second.organisation()
    first.organisation()
    with pytest.raises(ZohoDailyCapReached) as raised:
        second.organisation()
    midnight = datetime(2026, 12, 1, tzinfo=timezone.utc)
    assert raised.value.until == midnight
    assert fake.api_calls == 3
    pause = Pauses(engine).get("zoho")
    assert (pause.reason, pause.paused_until) == ("daily_cap", midnight)
    assert first.usage(clock()).calls_today == 3
    assert sample("reconciler_zoho_daily_requests_used") == 3
    assert sample("reconciler_zoho_daily_requests_limit") == 3

    clock.now = midnight
    assert first.organisation() == fake.organization_name
    assert not Pauses(engine).get("zoho").paused and first.usage(clock()).calls_today == 1


def test_zoho_saying_its_day_is_used_up_pauses_until_zoho_resets_it(fake: FakeZoho, client: ZohoClient, engine,
                                                                   clock) -> None:
    clock.now = datetime(2026, 11, 30, 20, 0, tzinfo=timezone.utc)
    fake.configure(requests_per_day=2, utc_offset_hours=1)  # a Lagos organisation: its day ends at 23:00 UTC;
    client.organisation()                                     # another integration used the rest of it
    client.organisation()
    with pytest.raises(ZohoDailyCapReached) as raised:
        client.organisation()
    zoho_midnight = datetime(2026, 11, 30, 23, 0, tzinfo=timezone.utc)
    assert raised.value.until == zoho_midnight
    pause = Pauses(engine).get("zoho")
    assert (pause.reason, pause.paused_until) == ("daily_cap", zoho_midnight)

    clock.now = zoho_midnight  # Zoho counts a new day; ours (UTC) has room left: calls go on at once
    assert client.organisation() == fake.organization_name
    assert client.usage(clock()).calls_today == 4


@pytest.mark.parametrize("status", [500, 503])
def test_a_5xx_may_have_been_carried_out(fake: FakeZoho, client: ZohoClient, status: int) -> None:
    customer = client.create_contact("Ada", "ada@example.com", None)
    fake.configure(error_5xx=1, error_5xx_status=status)
    with pytest.raises(ZohoUnavailable) as raised:
        client.create_salesorder(customer, ITEM_ID, 15000.0, "T2M-1")
    assert raised.value.may_have_arrived and "Internal error" in raised.value.message


def test_an_answer_lost_after_the_create_is_in_doubt_and_found_by_reference(fake: FakeZoho, engine, clock) -> None:
    client = ZohoClient(config_for(fake, request_timeout_seconds=0.5), engine, "worker-1", clock=clock)
    customer = client.create_contact("Ada", "ada@example.com", None)
    fake.configure(timeout_after_create=1, timeout_hold_seconds=10)
    with pytest.raises(ZohoUnavailable) as raised:
        client.create_salesorder(customer, ITEM_ID, 15000.0, "T2M-1")
    assert raised.value.may_have_arrived
    adopted = client.find_salesorder("T2M-1")
    assert adopted is not None and adopted.salesorder_id == fake.salesorders_for("T2M-1")[0]["salesorder_id"]


def test_a_zoho_that_cannot_be_reached_was_never_asked(fake: FakeZoho, client: ZohoClient, engine, clock) -> None:
    client.organisation()
    fake.stop()
    with pytest.raises(ZohoUnavailable) as raised:
        client.find_salesorder("T2M-1")
    assert not raised.value.may_have_arrived


def test_refusals_carry_zohos_code_and_message(fake: FakeZoho, client: ZohoClient) -> None:
    with pytest.raises(ZohoRejected) as raised:
        client.create_salesorder("999", ITEM_ID, 15000.0, "T2M-1")
    assert (raised.value.code, raised.value.message) == (4, "Invalid value passed for customer_id")
    with pytest.raises(ZohoNotFound) as missing:
        client.mark_open("4815000000999999")
    assert missing.value.code == 1002


def test_a_contact_name_taken_by_another_customer_is_made_unique(fake: FakeZoho, client: ZohoClient) -> None:
    first = client.create_contact("John Smith", "john@one.example", None)
    second = client.create_contact("John Smith", "john@two.example", None)
    assert first != second
    assert sorted(c["contact_name"] for c in fake.contacts) == ["John Smith", "John Smith (john@two.example)"]
    assert client.find_contact_by_email("john@two.example") == second


def test_replicas_racing_with_an_expired_token_make_one_refresh(fake: FakeZoho, replicas, clock) -> None:
    clients = [ZohoClient(config_for(fake), engine, worker, clock=clock) for engine, worker in replicas]
    clients[0].organisation()
    clock.advance(3600)  # every replica now holds an expired token
    fake.expire_tokens()
    together(*(lambda c=c: c.find_salesorder("T2M-1") for c in clients for _ in range(2)))  # raises what failed
    assert fake.token_requests == 2  # the first token, then exactly one refresh for all twelve callers


def test_a_token_shorter_than_the_refresh_ahead_is_used_for_half_its_life(fake: FakeZoho, client: ZohoClient,
                                                                          clock) -> None:
    fake.configure(token_expires_in=120)  # shorter than zoho.token_refresh_ahead_seconds (300)
    for _ in range(5):
        client.organisation()
    clock.advance(59)
    client.organisation()
    assert fake.token_requests == 1
    clock.advance(2)
    client.organisation()
    assert fake.token_requests == 2
