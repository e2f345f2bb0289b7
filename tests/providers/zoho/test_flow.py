"""The Zoho flow end to end against the fake Zoho (real HTTP, held to Zoho's OpenAPI documents): the happy
path, every fault Zoho can answer with, in-doubt creates adopted by their reference, and renewals."""
from __future__ import annotations

import dataclasses
import json
import logging
from datetime import datetime, timedelta, timezone

from prometheus_client import REGISTRY
from standardwebhooks.webhooks import Webhook

from jobs import rescue_leases
from reconciler.app import assemble
from reconciler.config import Product
from reconciler.coordination.pauses import Pauses
from reconciler.engine.schema import zoho_orders
from reconciler.providers.zoho.licences import add_months

from tests.providers.zoho.flow import PARTNER_SECRET, ZohoFlow
from tests.providers.zoho.intake_server import KEY, Partner, order_body, with_partner
from tests.providers.zoho.test_fake import Books

ITEM_ID = "4815000000044208"


def test_an_order_becomes_an_open_sales_order_a_licence_and_a_signed_partner_event(zoho_flow: ZohoFlow):
    flow = zoho_flow
    order_id = flow.add(tenure="12_MONTHS", customer_email="Ada.Obi@Example.ng")
    flow.submit()

    order = flow.order(order_id)
    assert order["status"] == "completed", order["last_error"]
    [salesorder] = flow.fake.salesorders
    assert (salesorder["reference_number"], salesorder["status"], salesorder["salesorder_id"]) == (
        order_id, "open", order["zoho_salesorder_id"])
    assert [(line["item_id"], line["rate"]) for line in salesorder["line_items"]] == [(ITEM_ID, 150000.0)]
    [contact] = flow.fake.contacts
    assert salesorder["customer_id"] == contact["contact_id"]
    [licence] = flow.licences()
    assert (licence["customer_id"], licence["product_id"], licence["activation_reference"]) == (
        order["customer_id"], "ZOHO_CRM_STD", order["activation_reference"])
    assert licence["expires_at"] == order["expiry_date"] == add_months(licence["starts_at"], 12)
    assert flow.history(order_id) == [("queued", "in_flight", "claimed"), ("in_flight", "completed", "fulfilled")]
    assert flow.events() == [(order_id, "ORDER_FULFILLED", {
        "orderId": order_id, "activationReference": order["activation_reference"],
        "salesOrderId": order["zoho_salesorder_id"], "expiryDate": order["expiry_date"].isoformat()})]

    flow.deliver()
    [delivered] = flow.receiver.requests
    event = Webhook(PARTNER_SECRET).verify(delivered.body, delivered.headers)  # raises unless signed right
    assert (event["type"], event["data"]["orderId"]) == ("ORDER_FULFILLED", order_id)


def test_a_known_customer_is_found_by_email_not_created_again(zoho_flow: ZohoFlow):
    flow = zoho_flow
    first = flow.add(customer_email="ada@example.ng", customer_id="CUST-A")
    flow.submit()
    second = flow.add(customer_email="ada@example.ng", customer_id="CUST-B", product_id="ZOHO_CRM_STD")
    flow.submit()
    assert flow.statuses() == {first: "completed", second: "completed"}
    assert len(flow.fake.contacts) == 1
    assert len({o["customer_id"] for o in flow.fake.salesorders}) == 1
    assert flow.fake.requests_received.get("POST create_contact") == 1


def test_an_order_the_catalogue_cannot_fill_is_rejected_before_any_call(zoho_flow: ZohoFlow):
    flow = zoho_flow
    order_id = flow.add(product_id="ZOHO_CRM_PRO")
    flow.submit()
    order = flow.order(order_id)
    assert (order["status"], order["reject_reason"]) == ("rejected", "unknown_product")
    assert flow.fake.api_calls == 0
    assert flow.events() == [(order_id, "ORDER_FAILED", {"orderId": order_id, "reason": order["last_error"],
                                                         "code": "unknown_product"})]


def test_a_429_holds_the_flow_back_without_spending_an_attempt_then_one_order_probes(zoho_flow: ZohoFlow):
    flow = zoho_flow
    orders = [flow.add(), flow.add()]
    flow.fake.configure(rate_limit_429=1)
    flow.submit()
    assert {flow.order(o)["status"] for o in orders} == {"queued"}
    assert {flow.order(o)["attempts"] for o in orders} == {0}
    pause = Pauses(flow.engine).get("zoho")
    assert pause.reason == "rate_limited" and pause.holds(flow.clock.now)
    calls = flow.fake.api_calls
    flow.submit()  # the pause holds every order back: no call at all
    assert flow.fake.api_calls == calls
    flow.clock.now = pause.paused_until
    flow.submit()  # one order probes; it works, so the flow opens and the other goes too
    assert flow.statuses() == {o: "completed" for o in orders}
    assert not Pauses(flow.engine).get("zoho").paused
    assert len(flow.fake.salesorders) == 2


def test_the_daily_cap_pauses_the_flow_until_the_next_day(zoho_flow: ZohoFlow):
    flow = zoho_flow
    flow.reconfigure(requests_per_day=2)  # the contact search and create: no call left for the sales order
    orders = [flow.add(), flow.add()]
    flow.submit()
    assert {flow.order(o)["status"] for o in orders} == {"queued"}
    assert {flow.order(o)["attempts"] for o in orders} == {0}
    assert flow.fake.salesorders == []
    pause = Pauses(flow.engine).get("zoho")
    assert pause.reason == "daily_cap" and pause.paused_until.date() == (flow.clock.now + timedelta(days=1)).date()
    calls = flow.fake.api_calls
    flow.submit()  # still paused: nothing is claimed, nothing is called
    assert flow.fake.api_calls == calls and {flow.order(o)["attempts"] for o in orders} == {0}
    flow.clock.now = pause.paused_until  # the next day: the probe goes, the cap counts afresh
    flow.reconfigure(requests_per_day=100)
    flow.submit()
    assert flow.statuses() == {o: "completed" for o in orders}
    assert [len(flow.fake.salesorders_for(o)) for o in orders] == [1, 1]


def test_refused_credentials_pause_the_flow_and_keep_the_orders(zoho_flow: ZohoFlow):
    flow = zoho_flow
    orders = [flow.add(), flow.add()]
    flow.fake.configure(refresh_refusal="invalid_code")
    flow.submit()
    assert {flow.order(o)["status"] for o in orders} == {"queued"}
    assert {flow.order(o)["attempts"] for o in orders} == {0}
    assert Pauses(flow.engine).get("zoho").reason == "unauthorised"
    assert flow.events() == []


def test_a_5xx_is_retried_on_the_schedule_then_dead_with_order_failed(zoho_flow: ZohoFlow):
    flow = zoho_flow
    flow.reconfigure(retry_schedule_seconds=(10.0,))
    order_id = flow.add()
    flow.fake.configure(error_5xx=1000)
    flow.submit()
    order = flow.order(order_id)
    assert (order["status"], order["attempts"]) == ("queued", 1)
    flow.clock.now = order["next_attempt_at"]
    flow.submit()
    order = flow.order(order_id)
    assert order["status"] == "dead"
    assert [event for _, event, _ in flow.events()] == ["ORDER_FAILED"]
    assert flow.fake.salesorders == []


def test_a_5xx_then_success_completes(zoho_flow: ZohoFlow):
    flow = zoho_flow
    order_id = flow.add()
    flow.fake.configure(error_5xx=1)
    flow.submit()
    flow.clock.now = flow.order(order_id)["next_attempt_at"]
    flow.submit()
    assert flow.order(order_id)["status"] == "completed"
    assert len(flow.fake.salesorders) == 1


def test_zoho_refusing_the_sales_order_fails_the_order_and_tells_the_partner(zoho_flow: ZohoFlow):
    flow = zoho_flow
    products = {"GHOST": Product("Not in Zoho", "999999", "NGN", {"1_MONTH": 10.0})}
    flow.config = dataclasses.replace(flow.config, partner=dataclasses.replace(flow.config.partner, products=products))
    flow.__post_init__()
    order_id = flow.add(product_id="GHOST")
    flow.submit()
    order = flow.order(order_id)
    assert order["status"] == "failed"
    assert "item_id" in order["last_error"]
    [(_, event, data)] = flow.events()
    assert (event, data["orderId"], data["reason"]) == ("ORDER_FAILED", order_id, order["last_error"])


def test_a_create_whose_answer_is_lost_is_in_doubt_then_adopted_never_created_twice(zoho_flow: ZohoFlow):
    flow = zoho_flow
    order_id = flow.add()
    flow.fake.configure(timeout_after_create=1, timeout_hold_seconds=2.0)
    flow.submit()
    order = flow.order(order_id)
    assert order["status"] == "in_doubt" and order["submitted_at"] is not None
    assert len(flow.fake.salesorders_for(order_id)) == 1  # it was created: only the answer was lost

    grace = flow.submit_job.grace.total_seconds()  # >= zoho.in_doubt_grace_seconds
    flow.clock.advance(grace - 1)
    flow.submit()  # within the grace: left alone
    assert flow.order(order_id)["status"] == "in_doubt"
    flow.clock.advance(2)
    flow.submit()
    order = flow.order(order_id)
    assert order["status"] == "completed"
    assert [h[2] for h in flow.history(order_id)][-3:] == ["in_doubt_grace_over", "claimed", "adopted"]
    [salesorder] = flow.fake.salesorders_for(order_id)
    assert (salesorder["salesorder_id"], salesorder["status"]) == (order["zoho_salesorder_id"], "open")
    assert flow.fake.requests_received.get("POST create_sales_order") == 1
    assert [event for _, event, _ in flow.events()] == ["ORDER_FULFILLED"]


def test_an_order_in_doubt_whose_create_never_arrived_is_created_after_the_search(zoho_flow: ZohoFlow):
    """A worker died after marking the order requested, before its create reached Zoho: rescued in doubt."""
    flow = zoho_flow
    order_id = flow.add()
    died_in_doubt(flow, order_id)
    flow.clock.advance(flow.submit_job.grace.total_seconds() + 1)
    flow.submit()
    assert (flow.order(order_id)["status"], flow.history(order_id)[-1][2]) == ("completed", "fulfilled")
    assert flow.fake.requests_received.get("GET list_sales_orders") == 1  # searched first
    assert len(flow.fake.salesorders_for(order_id)) == 1


def died_in_doubt(flow: ZohoFlow, order_id: str) -> None:
    """What a worker leaves behind when it dies after marking the order requested: the rescuer made it in doubt."""
    with flow.engine.begin() as conn:
        conn.execute(zoho_orders.update().where(zoho_orders.c.order_id == order_id)
                     .values(submitted_at=flow.clock.now, status="in_doubt", updated_at=flow.clock.now))


def test_a_sales_order_already_in_zoho_for_the_reference_is_adopted(zoho_flow: ZohoFlow):
    flow = zoho_flow
    order_id = flow.add()
    books = Books(flow.fake)
    books.salesorder(books.contact("someone@example.ng"), order_id)  # what an attempt lost to a crash created
    died_in_doubt(flow, order_id)
    flow.clock.advance(flow.submit_job.grace.total_seconds() + 1)
    flow.submit()
    order = flow.order(order_id)
    assert (order["status"], flow.history(order_id)[-1][2]) == ("completed", "adopted")
    assert len(flow.fake.salesorders_for(order_id)) == 1
    assert flow.fake.salesorders_for(order_id)[0]["status"] == "open"


def test_a_renewal_extends_the_licence_once_and_tells_the_partner_both_events(zoho_flow: ZohoFlow):
    flow = zoho_flow
    first = flow.add(customer_id="CUST-R", tenure="1_MONTH")
    flow.submit()
    [licence] = flow.licences()
    renewal = flow.add(customer_id="CUST-R", tenure="3_MONTHS")
    flow.fake.configure(timeout_after_create=1, timeout_hold_seconds=2.0)  # its create's answer is lost: adopted
    flow.submit()
    flow.clock.advance(flow.submit_job.grace.total_seconds() + 1)
    flow.submit()
    assert flow.statuses() == {first: "completed", renewal: "completed"}
    [extended] = flow.licences()
    assert extended["expires_at"] == add_months(licence["expires_at"], 3)
    order = flow.order(renewal)
    assert (order["activation_reference"], order["expiry_date"], order["renewal"]) == (
        licence["activation_reference"], extended["expires_at"], True)
    events = flow.events(renewal)
    assert [event for _, event, _ in events] == ["ORDER_FULFILLED", "SUBSCRIPTION_RENEWED"]
    assert events[1][2]["expiryDate"] == extended["expires_at"].isoformat()
    flow.deliver()
    types = [json.loads(r.body)["type"] for r in flow.receiver.requests]
    assert sorted(types) == ["ORDER_FULFILLED", "ORDER_FULFILLED", "SUBSCRIPTION_RENEWED"]


def test_every_step_is_one_log_line_with_the_customer_masked(zoho_flow: ZohoFlow, caplog):
    flow = zoho_flow
    done = flow.add(customer_email="ada.obi@example.ng", customer_phone="+234 803 123 4567")
    bad = flow.add(customer_email="not-an-email")
    with caplog.at_level(logging.INFO, logger="reconciler.providers.zoho.lifecycle"):
        flow.submit()
    lines = {r.order_ref: r.getMessage() for r in caplog.records if r.name == "reconciler.providers.zoho.lifecycle"}
    assert lines[done].startswith(f"Zoho order {done} completed (customer a***@example.ng, phone +23")
    assert "licence T2M-" in lines[done]
    assert lines[bad].startswith(f"Zoho order {bad} rejected (customer ***")
    assert not any("ada.obi" in line or "123 4567" in line for line in lines.values())


def test_a_probe_that_made_no_call_does_not_open_the_flow(zoho_flow: ZohoFlow):
    """The first order after a pause is rejected before any call: Zoho has not answered, so the flow stays shut
    and the next order probes alone; Zoho refuses it, so the one after it is never even claimed."""
    flow = zoho_flow
    pauses = Pauses(flow.engine)
    pauses.pause("zoho", "unauthorised", flow.clock.now, flow.clock.now, "refresh token refused")  # over now
    flow.fake.configure(refresh_refusal="invalid_code")
    bad, probe, waiting = flow.add(product_id="ZOHO_CRM_PRO"), flow.add(), flow.add()
    flow.submit()
    assert flow.statuses() == {bad: "rejected", probe: "queued", waiting: "queued"}
    assert pauses.get("zoho").holds(flow.clock.now)
    assert flow.history(waiting) == []
    flow.fake.configure(refresh_refusal=None)
    flow.clock.now = pauses.get("zoho").paused_until
    flow.submit()
    assert flow.statuses() == {bad: "rejected", probe: "completed", waiting: "completed"}
    assert not pauses.get("zoho").paused


def test_a_probe_that_zoho_refuses_again_keeps_the_flow_paused(zoho_flow: ZohoFlow):
    flow = zoho_flow
    pauses = Pauses(flow.engine)
    pauses.pause("zoho", "unauthorised", flow.clock.now, flow.clock.now, "refresh token refused")
    flow.fake.configure(refresh_refusal="invalid_code")
    orders = [flow.add(), flow.add()]
    flow.submit()
    assert {flow.order(o)["attempts"] for o in orders} == {0}
    assert flow.fake.token_requests == 1  # one probe, one token request: no storm
    assert pauses.get("zoho").holds(flow.clock.now)


def test_an_order_t2mobile_posts_to_the_daemons_listener_is_fulfilled_and_its_status_says_so(zoho_flow: ZohoFlow):
    """The partner intake as the daemon serves it (app.assemble's public listener), then the submit job."""
    flow = zoho_flow
    config = with_partner(flow.config, api_keys=KEY)
    listener = assemble(config, flow.engine, worker_id="intake-test", clock=flow.clock).public_listener().start()
    try:
        partner = Partner(listener)
        accepted = partner.order(order_body("T2M-E2E-1"), key="k-e2e-1")
        assert accepted.status_code == 202, accepted.text
        flow.clock.now = max(flow.clock.now, datetime.now(timezone.utc))
        flow.submit()
        shown = partner.get("/t2mobile/orders/T2M-E2E-1").json()
    finally:
        listener.stop()
    order = flow.order("T2M-E2E-1")
    assert order["status"] == "completed"
    assert (shown["status"], shown["salesOrderId"]) == ("completed", order["zoho_salesorder_id"])
    assert [event for _, event, _ in flow.events("T2M-E2E-1")] == ["ORDER_FULFILLED"]


def test_an_order_whose_worker_died_is_rescued_in_doubt_and_adopted_or_created_once(zoho_flow: ZohoFlow, caplog):
    """The outbox policy: a Zoho order's lease that ran out may hide a created sales order, so it is in doubt."""
    flow = zoho_flow
    order_id = flow.add()
    outbox = flow.ctx.outboxes["zoho_orders"]
    [row] = outbox.claim(1)  # a worker took it, then died
    flow.clock.now = row["locked_until"] + timedelta(seconds=1)
    with caplog.at_level(logging.INFO, logger="reconciler.providers.zoho.lifecycle"):
        rescue_leases.run(flow.ctx)
    assert flow.order(order_id)["status"] == "in_doubt"
    assert any(r.getMessage().startswith(f"Zoho order {order_id} in doubt") for r in caplog.records)
    flow.clock.advance(flow.submit_job.grace.total_seconds() + 1)
    flow.submit()
    assert flow.order(order_id)["status"] == "completed"
    assert len(flow.fake.salesorders_for(order_id)) == 1


def test_the_submissions_counter_counts_each_result(zoho_flow: ZohoFlow):
    flow = zoho_flow

    def count(result: str) -> float:
        return REGISTRY.get_sample_value("reconciler_zoho_submissions_total", {"result": result}) or 0.0

    before = {result: count(result) for result in ("completed", "rejected")}
    flow.add(), flow.add(), flow.add(tenure="2_WEEKS")
    flow.submit()
    assert (count("completed") - before["completed"], count("rejected") - before["rejected"]) == (2, 1)
